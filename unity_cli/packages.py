"""Guard against another distribution's top-level package shadowing one of Unity's.

Unity installs the top-level packages ``unity``, ``unity_cli``, ``models``, ``data_pipeline`` and ``eval``.
``models`` and ``eval`` are common names: another project installed in the same environment may bring its
own, and whichever comes first on ``sys.path`` wins. The commands check before they start.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

OWN = ("unity", "models", "data_pipeline", "eval")


def foreign_packages() -> list[str]:
    """The names in ``OWN`` that resolve to a folder other than the one beside this installation of ``unity_cli``."""
    home = Path(__file__).resolve().parents[1]
    foreign = []
    for name in OWN:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None and spec.origin else None
        if origin is None or Path(origin).resolve().parent != home / name:
            foreign.append(f"{name} ({origin or 'not found'})")
    return foreign


def check_packages() -> str | None:
    """An error message when a package of Unity is shadowed, else None."""
    foreign = foreign_packages()
    if not foreign:
        return None
    return (
        f"Unity's packages are shadowed by others of the same name: {', '.join(foreign)}; "
        "install Unity in its own virtual environment (python -m venv .venv) so that nothing else provides "
        "`models`, `eval`, `data_pipeline` or `unity`"
    )
