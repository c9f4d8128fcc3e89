"""Recording benchmark figures: the exact command (with its thread count) and a row in RESULTS.md."""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
MARKER = "<!-- throughput.py --record inserts rows above this line -->"


def section_marker(script: str) -> str:
    """The line in RESULTS.md above which ``script --record`` inserts its sections."""
    return f"<!-- {script} --record inserts sections above this line -->"


def env_prefix() -> str:
    """``OMP_NUM_THREADS=n `` when set, so a recorded command reproduces the thread count."""
    return f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""


def insert_row(path: str | Path, row: str, marker: str = MARKER) -> None:
    """Put ``row`` on the line above ``marker`` in ``path`` (a table's end), or append it without a marker."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    if marker in text:
        text = text.replace(marker, f"{row}\n{marker}", 1)
    else:
        text = text + ("" if not text or text.endswith("\n") else "\n") + row + "\n"
    path.write_text(text)


def record_section(script: str, title: str, body: str, argv: list[str] | None = None, details: str = "") -> None:
    """Insert ``### title``, the date, machine and exact command of ``benchmarks/<script>`` (with ``details``
    after it) and ``body`` into RESULTS.md, above the script's :func:`section_marker` (else at the end)."""
    import torch  # here, so that importing this module stays light

    args = sys.argv[1:] if argv is None else argv
    command = f"{env_prefix()}python benchmarks/{script} {' '.join(args)}".rstrip()
    machine = torch.cuda.get_device_name() if torch.cuda.is_available() else f"{os.cpu_count()}-core CPU"
    heading = f"### {title}\n\n{datetime.date.today()}, {machine}: `{command}`{details}"
    insert_row(RESULTS, f"{heading}\n\n{body}\n", section_marker(script))
