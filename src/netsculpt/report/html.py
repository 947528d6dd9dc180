"""Self-contained HTML view of a report: tables plus matplotlib plots embedded as base64 PNG.

Nothing is fetched from the network: no CDN, no fonts, no scripts.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import TYPE_CHECKING, Any

from netsculpt.report.console import COLUMNS, HEADERS, change
from netsculpt.report.core import jsonable, width_of
from netsculpt.report.trace_plot import plot_trace

if TYPE_CHECKING:
    from netsculpt.report.core import Report

MAX_BARS = 60  # beyond this a bar chart is unreadable
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; max-height: 300px; }
img { max-width: 100%; display: block; margin: 1em 0; }
.note { color: #555; }
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _table(header: list[str], rows: list[list[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _summary_rows(rep: Report) -> list[list[str]]:
    def row(r: Report, label: str) -> list[str]:
        cells = [label] + [change(getattr(r.before, c), getattr(r.after, c), c) for c in COLUMNS]
        return cells + [change(r.before.metric, r.after.metric, "metric")]

    rows = [row(s, f"{i + 1}. {s.op}") for i, s in enumerate(rep.steps)]
    return rows + [row(rep, "total" if rep.steps else rep.op)]


def _layer_rows(rep: Report) -> list[list[Any]]:
    """``[name, type, width before, width after, ratio]``; "removed" for layers that are gone."""
    rows = []
    for name in dict.fromkeys(list(rep.layers_before) + list(rep.layers_after)):
        b, a = rep.layers_before.get(name), rep.layers_after.get(name)
        wb = width_of(b) if b else None
        wa = width_of(a) if a else None
        if a is None and rep.layers_after:
            wa = "removed"
        kind = (b or a or {}).get("type", "")
        ratio = f"{wa / wb:.2f}" if isinstance(wa, int) and wb else ""
        rows.append([name, kind, "–" if wb is None else wb, "–" if wa is None else wa, ratio])
    return rows


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    return Figure(figsize=(w, h))


def plot_widths(rep: Report) -> str | None:
    """Grouped bars: each layer's width before and after."""
    rows = [r for r in _layer_rows(rep) if isinstance(r[2], int)][:MAX_BARS]
    if not rows:
        return None
    names = [r[0] for r in rows]
    before = [r[2] for r in rows]
    after = [r[3] if isinstance(r[3], int) else 0 for r in rows]
    fig = _figure(max(6.0, 0.3 * len(names)), 3.5)
    ax = fig.add_subplot()
    x = list(range(len(names)))
    ax.bar([i - 0.2 for i in x], before, width=0.4, label="before", color="#9db4d6")
    ax.bar([i + 0.2 for i in x], after, width=0.4, label="after", color="#2d5fa6")
    ax.set_xticks(x, names, rotation=70, fontsize=7, ha="right")
    ax.set_ylabel("width")
    ax.set_title("per-layer width")
    ax.legend()
    return _png(fig)


def _flat(v: Any) -> list[float]:
    if isinstance(v, (int, float)):
        return [float(v)]
    if isinstance(v, list):
        return [x for item in v for x in _flat(item)]
    return []


def plot_scores(scores: dict[str, Any], title: str) -> str | None:
    """Importance per group / block: bars for scalar scores, box plots for per-channel scores."""
    scores = {k: _flat(v) for k, v in jsonable(scores).items()}
    scores = {k: v for k, v in scores.items() if v}
    if not scores:
        return None
    names = list(scores)[:MAX_BARS]
    fig = _figure(max(6.0, 0.3 * len(names)), 3.5)
    ax = fig.add_subplot()
    if all(len(scores[n]) == 1 for n in names):
        ax.bar(range(len(names)), [scores[n][0] for n in names], color="#c9733a")
    else:
        ax.boxplot([scores[n] for n in names], positions=range(len(names)), showfliers=False)
    ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7, ha="right")
    ax.set_ylabel("importance")
    ax.set_title(title)
    return _png(fig)


def metric_points(rep: Report) -> list[tuple[str, float, float, str]]:
    """``(label, cost, metric, cost_name)`` for the start of a run and after each step."""
    cost = (
        "macs" if rep.before.macs is not None or any(s.after.macs for s in rep.steps) else "params"
    )
    pts = []
    snaps = [("start", rep.steps[0].before if rep.steps else rep.before)]
    snaps += [(f"{i + 1}. {s.op}", s.after) for i, s in enumerate(rep.steps)] or [
        (rep.op, rep.after)
    ]
    for label, snap in snaps:
        c = getattr(snap, cost)
        if c is not None and snap.metric is not None:
            pts.append((label, float(c), float(snap.metric), cost))
    return pts


def plot_metric_vs_cost(rep: Report) -> str | None:
    """Metric against MACs (or params) after every step of a run."""
    pts = metric_points(rep)
    if not pts:
        return None
    fig = _figure(6.0, 3.5)
    ax = fig.add_subplot()
    ax.plot([p[1] for p in pts], [p[2] for p in pts], "o-", color="#2d5fa6")
    for label, x, y, _ in pts:
        ax.annotate(label, (x, y), fontsize=7, textcoords="offset points", xytext=(4, 4))
    names = {s.metric_name for s in [rep.before, rep.after] + [s.after for s in rep.steps]}
    names.discard(None)
    ax.set_xlabel(HEADERS[pts[0][3]])
    ax.set_ylabel(next(iter(names)) if len(names) == 1 else "metric")
    ax.set_title("metric vs cost across the run")
    return _png(fig)


def _plots(rep: Report) -> list[str]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return ['<p class="note">Plots need matplotlib (pip install netsculpt[report]).</p>']
    out = [plot_widths(rep), plot_metric_vs_cost(rep), plot_trace(rep)]
    for i, step in enumerate(rep.steps or [rep]):
        scores = step.details.get("scores") if isinstance(step.details, dict) else None
        if isinstance(scores, dict) and scores:
            label = f"{i + 1}. {step.op}" if rep.steps else step.op
            out.append(plot_scores(scores, f"importance ({label})"))
    return [p for p in out if p]


def _step_section(i: int | None, rep: Report) -> str:
    title = rep.op if i is None else f"{i + 1}. {rep.op}"
    parts = [f"<h3>{_esc(title)}</h3>"]
    if rep.config:
        parts.append(f"<pre>{_esc(json.dumps(jsonable(rep.config), indent=1))}</pre>")
    parts += [f'<p class="note">{_esc(n)}</p>' for n in rep.notes]
    details = {k: v for k, v in jsonable(rep.details).items() if k != "scores"}
    if details:
        text = json.dumps(details, indent=1)
        if len(text) > 20_000:
            text = text[:20_000] + "\n…"
        parts.append(f"<details><summary>details</summary><pre>{_esc(text)}</pre></details>")
    return "\n".join(parts)


def render_html(rep: Report) -> str:
    """The whole page as a string."""
    header = ["op"] + [HEADERS[c] for c in COLUMNS] + ["metric"]
    body = [f"<h1>netsculpt {_esc(rep.op)}</h1>", "<h2>Summary</h2>"]
    body.append(_table(header, _summary_rows(rep), "summary"))
    layers = _layer_rows(rep)
    if layers:
        body.append("<h2>Layers</h2>")
        body.append(_table(["layer", "type", "before", "after", "ratio"], layers, "layers"))
    plots = _plots(rep)
    if plots:
        body.append("<h2>Plots</h2>")
        body.extend(plots)
    body.append("<h2>Steps</h2>")
    if rep.steps:
        body.extend(_step_section(i, s) for i, s in enumerate(rep.steps))
    else:
        body.append(_step_section(None, rep))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>netsculpt {_esc(rep.op)} report</title><style>{CSS}</style></head>\n"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
