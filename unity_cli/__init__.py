"""The command line of an installed Unity: ``unity <command>`` and the ``unity-*`` scripts.

It sits above every other package (it trains with ``unity`` and evaluates with ``eval``, as ``train.py``
does in a checkout); nothing but ``train.py`` imports it.
"""
