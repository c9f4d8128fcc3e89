"""Recording benchmark figures: the exact command (with its thread count) and a row in RESULTS.md."""

from __future__ import annotations

import os
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
MARKER = "<!-- throughput.py --record inserts rows above this line -->"


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
