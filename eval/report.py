"""Tables of a UniBench-style ``results.json``, printed as text and written as a self-contained HTML report.

Both renderings come from one list of tables (title, a line saying what the table shows, header,
rows), so the terminal and the report always show the same figures. Every table carries its
negative control or trivial baseline and, where there is one, the real-data ceiling; the HTML adds a
bar chart per metric (model, baselines, controls and ceiling in their own colours), the flags
(static videos, flat clips, consistency no better than shuffled pairs) in red, the training curves
when the run's ``metrics.jsonl`` was found, and the image grids. Values that could not be measured
show as "n/a" with the reason (a tooltip in HTML); images are embedded as base64 PNG, so the report
is one file.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from eval import multistream
from eval.report_charts import bar_chart, legend, line_chart
from eval.scores import HEADLINE, PROTOCOL

QUALITY = (  # VBench-style dimensions in table order; dynamic degree always sits beside flickering
    "temporal_flickering",
    "motion_smoothness_linear_proxy",
    "motion_smoothness",
    "dynamic_degree",
    "dynamic_degree_dis",
    "subject_consistency",
    "background_consistency",
)
ROLES = {  # row label -> role in the charts; anything else is a trivial baseline
    "model": "model",
    "model, another clip's estimate": "control",
    "another clip's real video": "control",
    "shuffled pairs": "control",
    "ground truth read back (ceiling)": "ceiling",
    "real video": "ceiling",
}
STILL_NOTE = "flickering and smoothness reward still frames: read them with dynamic degree and the static flag"


@dataclass
class Table:
    title: str
    note: str  # one line: what the table shows
    header: list[str]
    rows: list[list]  # cells: str, float, None, {"not_measurable": reason} or {"flag": text, "on": bool}
    charts: list[tuple[str, bool, list]] = field(default_factory=list)  # (metric, higher, [(label, value, role)])


def _metric_cells(modality: str, scores: dict) -> list:
    if "not_measurable" in scores:
        return [scores] * len(HEADLINE[modality])
    return [scores.get(name) for name, _ in HEADLINE[modality]]


def _metric_names(modality: str) -> list[str]:
    return [f"{name} {'↑' if higher else '↓'}" for name, higher in HEADLINE[modality]]


def _dims(quality: dict) -> list[str]:
    present = list(quality["vbench"])
    return [d for d in QUALITY if d in present] + [d for d in present if d not in QUALITY]


def _quality_cells(quality: dict | None, dims: list[str]) -> list:
    if quality is None:
        return ["-"] * (len(dims) + 1)
    cells = []
    for d in dims:
        entry = quality["vbench"].get(d, {"value": None, "reason": "not computed"})
        cells.append(entry["value"] if entry["value"] is not None else {"not_measurable": entry["reason"]})
    return [*cells, static_cell(quality.get("static"))]


def static_cell(flag: dict | None):
    if not flag or flag.get("value") is None:
        return {"not_measurable": (flag or {}).get("reason", "no static flag")}
    text = f"{flag['static_videos']}/{flag['videos']} still"
    return {"flag": f"STATIC ({text})" if flag["value"] else f"moves ({text})", "on": flag["value"]}


def _charts(modality: str | None, rows: dict, metric_of, dims: list[str] = (), quality_of=None) -> list:
    """Bar charts: one per headline metric of ``modality`` (``metric_of(row)`` gives its scores), one per dim."""
    charts = []
    for k, (name, higher) in enumerate(HEADLINE.get(modality, ())):
        bars = []
        for label, row in rows.items():
            value = (metric_of(row) or {}).get(name)
            bars.append((label, value if isinstance(value, float) else None, ROLES.get(label, "baseline")))
        charts.append((f"{name}" if k else f"{name} ({modality})", higher, bars))
    for d in dims if quality_of else ():
        bars = []
        for label, row in rows.items():
            quality = quality_of(row)
            if quality is not None:
                still = (quality.get("static") or {}).get("value") is True
                name = f"{label} [STATIC]" if still else label
                bars.append((name, quality["vbench"].get(d, {}).get("value"), ROLES.get(label, "baseline")))
        charts.append((d, True, bars))  # every VBench dimension: higher is better
    return [chart for chart in charts if any(value is not None for _, value, _ in chart[2])]


def tables(results: dict) -> list[Table]:
    """Every table of the report, split by split."""
    out = []
    for split, r in results["splits"].items():
        tag = f"{split} split ({r['clips']} clips)"
        dims = _dims(r["real"])
        for modality, rows in r["estimation"].items():
            out.append(
                Table(
                    f"{tag}: {modality} estimation",
                    f"{modality} estimated from the real rgb vs the raw ground truth, beside trivial baselines, "
                    f"a shuffled control and the read-back ceiling; {PROTOCOL[modality]}",
                    ["prediction", *_metric_names(modality)],
                    [[label, *_metric_cells(modality, scores)] for label, scores in rows.items()],
                    _charts(modality, rows, lambda row: row),
                )
            )
        for modality, rows in r["generation"].items():
            out.append(
                Table(
                    f"{tag}: rgb generated from {modality}",
                    f"rgb generated from the ground-truth {modality}; fidelity: the {modality} the model estimates "
                    f"back from it, vs the ground truth; {STILL_NOTE}",
                    ["rgb scored", *[f"fidelity {n}" for n in _metric_names(modality)], *dims, "static"],
                    [
                        [label, *_metric_cells(modality, row["fidelity"]), *_quality_cells(_quality(row), dims)]
                        for label, row in rows.items()
                    ],
                    _charts(modality, rows, lambda row: row["fidelity"], dims, _quality),
                )
            )
        t2v_rows = {"model": r["t2v"], "real video": r["real"]}
        out.append(
            Table(
                f"{tag}: text to video (one stream)",
                f"rgb generated from each clip's caption alone, beside the real clips; {STILL_NOTE}",
                ["rgb scored", *dims, "static"],
                [[label, *_quality_cells(q, dims)] for label, q in t2v_rows.items()],
                _charts(None, t2v_rows, None, dims, lambda q: q),
            )
        )
        for modality, row in r["joint"].items():
            out.append(_joint_table(tag, modality, row, r["real"], dims))
        out += [Table(*table) for table in multistream.tables(tag, r)]
    return out


def _quality(row: dict) -> dict | None:
    return {"vbench": row["vbench"], "static": row.get("static")} if "vbench" in row else None


def _joint_table(tag: str, modality: str, row: dict, real: dict, dims: list[str]) -> Table:
    c = row["consistency"]
    flat = {"flag": f"{c['flat_clips']}/{c['clips']} flat", "on": c["flat_clips"] > 0}
    real_flat = {"flag": f"{c.get('real_flat_clips', 0)}/{c['clips']} flat", "on": c.get("real_flat_clips", 0) > 0}
    rows = {"model": c["model"], "shuffled pairs": c["shuffled pairs"], "real video": c["real video"]}
    title = f"{tag}: joint generation of rgb and {modality}"
    if c.get("beats_shuffled") is False:
        title += " (consistency NO better than shuffled pairs)"
    if c.get("above_ceiling"):
        title += " (consistency ABOVE the real-data ceiling: the estimator agrees with its own generator)"
    return Table(
        title,
        f"cross-stream consistency: the jointly generated {modality} vs the {modality} the model estimates from "
        f"the jointly generated rgb, over clips with structure (pixel std >= {c['flat_std']:g} grey levels in "
        "rgb, modality and estimate); shuffled pairs (another clip's estimate) is the negative control, the "
        f"ground truth vs the estimate from the real rgb the ceiling; {STILL_NOTE}",
        ["pair scored", *_metric_names(modality), "flat clips", *dims, "static"],
        [
            ["model", *_metric_cells(modality, c["model"]), flat, *_quality_cells(_quality(row), dims)],
            ["shuffled pairs", *_metric_cells(modality, c["shuffled pairs"]), "-", *_quality_cells(None, dims)],
            ["real video", *_metric_cells(modality, c["real video"]), real_flat, *_quality_cells(real, dims)],
        ],
        _charts(modality, rows, lambda scores: scores),
    )


def flags(all_tables: list[Table]) -> list[str]:
    """Every flag raised in the tables, one line each: static sets, flat clips, consistency flags."""
    out = []
    for table in all_tables:
        if "NO better" in table.title or "ABOVE the" in table.title:
            out.append(table.title)
        for row in table.rows:
            raised = [c["flag"] for c in row[1:] if isinstance(c, dict) and c.get("on")]
            out += [f"{table.title}: {row[0]}: {flag}" for flag in raised]
    return out


def _text(cell) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, dict):
        return cell["flag"] if "flag" in cell else "n/a"
    if isinstance(cell, float):
        return f"{cell:.4f}"
    return str(cell)


def format_tables(results: dict) -> str:
    """The report's tables as aligned plain text, each with its line saying what it shows."""
    blocks = []
    for table in tables(results):
        cells = [table.header] + [[_text(c) for c in row] for row in table.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(table.header))]
        lines = [
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
            for row in cells
        ]
        blocks.append("\n".join([table.title, f"  ({table.note})", *lines]))
    return "\n\n".join(blocks)


def _html_cell(cell) -> str:
    if isinstance(cell, dict) and "flag" in cell:
        return f'<td class="{"flag" if cell["on"] else "ok"}">{html.escape(cell["flag"])}</td>'
    if isinstance(cell, dict):
        return f'<td class="na" title="{html.escape(cell["not_measurable"])}">n/a</td>'
    return f"<td>{html.escape(_text(cell))}</td>"


STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:.4em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
    ".na{color:#999}.flag{background:#fde2e1;color:#b00020;font-weight:bold}.ok{color:#2a7}"
    "h2{font-size:1.1em;margin-top:1.6em}h2.flagged{color:#b00020}p.note{color:#444;margin:.2em 0;font-size:.92em}"
    ".charts{display:flex;flex-wrap:wrap;gap:4px 18px}.ct{font:bold 12px sans-serif}.cs{font:11px sans-serif;"
    "fill:#666}.cl{font:11px sans-serif}.cv{font:11px sans-serif}.cn{font:11px sans-serif;fill:#999}"
    ".key{margin-right:14px;font-size:.9em}.sw{display:inline-block;width:12px;height:12px;margin-right:4px;"
    "vertical-align:middle}img{image-rendering:pixelated}.flags{border:2px solid #b00020;padding:.3em .8em;"
    "color:#b00020;font-size:.92em;max-width:1100px}.flags ul{margin:.2em 0}"
)


def write_report(results: dict, path: Path, images: Path, curves: dict | None = None) -> None:
    """A self-contained HTML page: settings, every table with its charts and flags, the training curves
    (``curves``: ``{name: [(step, value)]}``) and the PNG grids embedded."""
    parts = [
        f"<h1>UniBench-style report</h1><p>checkpoint <code>{html.escape(results['checkpoint'])}</code> "
        f"({html.escape(results['weights'])} weights); settings <code>{html.escape(str(results['settings']))}</code>. "
        f"Hover over n/a for the reason; flags are in red.</p><p>{legend()}</p>"
    ]
    all_tables = tables(results)
    raised = flags(all_tables)
    items = "".join(f"<li>{html.escape(line)}</li>" for line in raised) or "<li>none</li>"
    parts.append(f"<div class='flags'><b>Flags ({len(raised)})</b><ul>{items}</ul></div>")
    if curves:
        parts.append("<h2>Training curves</h2>" + line_chart("loss against step (log scale)", curves))
    for table in all_tables:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
        body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in table.rows)
        flagged = ' class="flagged"' if "NO better" in table.title or "ABOVE the" in table.title else ""
        charts = "".join(bar_chart(*chart) for chart in table.charts)
        parts.append(
            f"<h2{flagged}>{html.escape(table.title)}</h2><p class='note'>{html.escape(table.note)}</p>"
            f"<table><tr>{head}</tr>{body}</table><div class='charts'>{charts}</div>"
        )
    for png in sorted(images.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(
            f'<h2>{html.escape(png.stem)}</h2><img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}">'
        )
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>UniBench report</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
