"""``unity <command> [args]``: every command of Unity behind one name (``unity <command> --help`` for each).

Each command is the module named beside it, run with the arguments that follow; the ``unity-train``,
``unity-sample``, ``unity-eval``, ``unity-data`` and ``unity-convert`` scripts are the same commands.
"""

from __future__ import annotations

import sys


def _train(argv):
    from unity_cli.train import main

    return main(argv)


def _sample(argv):
    from unity.sample import main

    return main(argv)


def _eval(argv):
    from eval.run_report import main

    return main(argv)


def _unibench(argv):
    from eval.unibench import main

    return main(argv)


def _vbench(argv):
    from eval.vbench import main

    return main(argv)


def _data(argv):
    from data_pipeline.__main__ import main

    return main(argv)


def _convert(argv):
    from unity.convert import main

    return main(argv)


def _lora(argv):
    from unity.lora import main

    return main(argv)


def _precompute(argv):
    from unity.precompute import main

    return main(argv)


def _checkpoint(argv):
    from unity.checkpoint import main

    return main(argv)


# command -> (function, module, what it does)
COMMANDS = {
    "train": (_train, "unity_cli.train", "train a run, then evaluate it (python train.py)"),
    "sample": (_sample, "unity.sample", "sample a trained model: estimate, generate, joint, t2v, sentence"),
    "eval": (_eval, "eval.run_report", "evaluate a finished run (depth estimation against step 0 and the prior)"),
    "unibench": (_unibench, "eval.unibench", "UniBench-style evaluation of every modality and task"),
    "vbench": (_vbench, "eval.vbench", "VBench-style dimensions of any videos"),
    "data": (_data, "data_pipeline", "synth, check, preview, ingest, import, external"),
    "convert": (_convert, "unity.convert", "export a run as a pipeline folder; convert other models"),
    "lora": (_lora, "unity.lora", "fold a LoRA run's adapters into its base"),
    "precompute": (_precompute, "unity.precompute", "write latents and text embeddings into shards"),
    "checkpoint": (_checkpoint, "unity.checkpoint", "consolidate a sharded checkpoint"),
}


def usage() -> str:
    from unity import __version__

    width = max(map(len, COMMANDS))
    lines = [f"usage: unity <command> [args]   (Unity {__version__})", "", "commands:"]
    lines += [f"  {name:<{width}}  {what}  [{module}]" for name, (_, module, what) in COMMANDS.items()]
    lines += ["", "unity <command> --help describes a command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from unity import __version__

        print(__version__)
        return 0
    from unity_cli.packages import check_packages

    problem = check_packages()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if argv[0] not in COMMANDS:
        print(f"unity: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]][0](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
