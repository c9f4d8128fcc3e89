"""Tables of a UniBench-style ``results.json``, printed as text and written as a self-contained HTML report.

Both renderings come from one list of tables (title, header, rows), so the terminal and the report
always show the same figures. Values that could not be measured show as "n/a" with the reason
(a tooltip in HTML); images are embedded as base64 PNG, so the report is one file.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from eval.scores import HEADLINE

Table = tuple[str, list[str], list[list]]  # title, header, rows of cells (str, float, None or a not-measurable dict)
QUALITY = (
    "temporal_flickering",
    "motion_smoothness_linear_proxy",
    "dynamic_degree",
    "subject_consistency",
    "background_consistency",
)


def _metric_cells(modality: str, scores: dict) -> list:
    if "not_measurable" in scores:
        return [scores] * len(HEADLINE[modality])
    return [scores.get(name) for name, _ in HEADLINE[modality]]


def _metric_names(modality: str) -> list[str]:
    return [f"{name} {'↑' if higher else '↓'}" for name, higher in HEADLINE[modality]]


def _quality_cells(quality: dict, dims: list[str]) -> list:
    return [
        quality[d]["value"] if quality[d]["value"] is not None else {"not_measurable": quality[d]["reason"]}
        for d in dims
    ]


def tables(results: dict) -> list[Table]:
    """Every table of the report, split by split."""
    out = []
    for split, r in results["splits"].items():
        tag = f"{split} split ({r['clips']} clips)"
        dims = [d for d in QUALITY if d in r["vbench_real"]]
        for modality, rows in r["estimation"].items():
            out.append(
                (
                    f"{tag}: {modality} estimation",
                    ["prediction", *_metric_names(modality)],
                    [[label, *_metric_cells(modality, scores)] for label, scores in rows.items()],
                )
            )
        for modality, rows in r["generation"].items():
            header = ["rgb scored", *[f"fidelity {n}" for n in _metric_names(modality)], *dims]
            body = [
                [label, *_metric_cells(modality, row["fidelity"]), *_quality_cells(row["vbench"], dims)]
                for label, row in rows.items()
            ]
            out.append((f"{tag}: rgb generated from {modality}", header, body))
        joint_rows = []
        for modality, row in r["joint"].items():
            consistency = ", ".join(
                f"{name}={_text(value)}"
                for name, value in zip(_metric_names(modality), _metric_cells(modality, row["consistency"]))
            )
            joint_rows.append([modality, consistency, *_quality_cells(row["vbench"], dims)])
        out.append(
            (
                f"{tag}: text to video (one stream)",
                ["rgb scored", *dims],
                [
                    ["model", *_quality_cells(r["t2v"]["vbench"], dims)],
                    ["real video", *_quality_cells(r["vbench_real"], dims)],
                ],
            )
        )
        if joint_rows:
            out.append(
                (
                    f"{tag}: joint generation (generated modality vs estimated from the generated rgb)",
                    ["modality", "cross-stream consistency", *dims],
                    joint_rows,
                )
            )
    return out


def _text(cell) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, dict):
        return "n/a"
    if isinstance(cell, float):
        return f"{cell:.4f}"
    return str(cell)


def format_tables(results: dict) -> str:
    """The report's tables as aligned plain text."""
    blocks = []
    for title, header, rows in tables(results):
        cells = [header] + [[_text(c) for c in row] for row in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        lines = [
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
            for row in cells
        ]
        blocks.append("\n".join([title, *lines]))
    return "\n\n".join(blocks)


def _html_cell(cell) -> str:
    if isinstance(cell, dict):
        return f'<td class="na" title="{html.escape(cell["not_measurable"])}">n/a</td>'
    return f"<td>{html.escape(_text(cell))}</td>"


def write_report(results: dict, path: Path, images: Path) -> None:
    """A self-contained HTML page: settings, every table, and the PNG grids embedded."""
    parts = [
        f"<h1>UniBench-style report</h1><p>checkpoint <code>{html.escape(results['checkpoint'])}</code> "
        f"({html.escape(results['weights'])} weights); settings <code>{html.escape(str(results['settings']))}</code>. "
        "Hover over n/a for the reason.</p>"
    ]
    for title, header, rows in tables(results):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows)
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>")
    for png in sorted(images.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(
            f'<h2>{html.escape(png.stem)}</h2><img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'
        )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}td:first-child{text-align:left}.na{color:#999}img{image-rendering:pixelated}"
    )
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>UniBench report</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )
