"""The main job in a checkout: ``python train.py [--config tiny | configs/tiny.yaml] [key=value ...]``.

The same command as the installed ``unity-train`` (``unity_cli/train.py``): trains (``unity.train.trainer``),
then hands the finished run to its evaluation (``eval.run_report``), which writes
``<run>/eval/results.json`` and prints the table. Runs the same way in one process and under ``deepspeed``
or ``torchrun`` (``parallel.engine=deepspeed``); the main rank evaluates.
"""

import sys

from unity_cli.train import main

if __name__ == "__main__":
    sys.exit(main())
