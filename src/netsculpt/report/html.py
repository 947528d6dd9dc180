"""Self-contained HTML view of a report: tables plus matplotlib plots embedded as base64 PNG.

Nothing is fetched from the network: no CDN, no fonts, no scripts.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import TYPE_CHECKING, Any

from netsculpt.report.console import BLOCK_FIXED, COLUMNS, HEADERS, change, sparsity_text
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
.config { font-family: ui-monospace, monospace; font-size: 0.85em; color: #333; }
td.text, th.text { text-align: left; }
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _table(
    header: list[str], rows: list[list[Any]], cls: str = "", text: tuple[str, ...] = ()
) -> str:
    """An HTML table; the columns named in ``text`` are left-aligned (names, lists)."""
    left = [h in text for h in header]

    def cell(tag: str, i: int, c: Any) -> str:
        attr = ' class="text"' if i < len(left) and left[i] else ""
        return f"<{tag}{attr}>{_esc(c)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>" for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _summary_rows(rep: Report) -> list[list[str]]:
    def row(r: Report, label: str) -> list[str]:
        cells = [label] + [change(getattr(r.before, c), getattr(r.after, c), c) for c in COLUMNS]
        cells.append(sparsity_text(r) or "–")
        return cells + [change(r.before.metric, r.after.metric, "metric")]

    rows = [row(s, f"{i + 1}. {s.op}") for i, s in enumerate(rep.steps)]
    return rows + [row(rep, "total" if rep.steps else rep.op)]


def _summary(rep: Report) -> str:
    """The summary table; columns nobody measured (all "–") are left out, as on the console."""
    snaps = [rep.before, rep.after] + [s for r in rep.steps for s in (r.before, r.after)]
    names = {s.metric_name for s in snaps if s.metric_name}
    metric = names.pop() if len(names) == 1 else "metric"
    header = ["op"] + [HEADERS[c] for c in COLUMNS] + ["sparsity", metric]
    rows = _summary_rows(rep)
    keep = [i for i in range(len(header)) if i < 2 or any(r[i] != "–" for r in rows)]
    return _table([header[i] for i in keep], [[r[i] for i in keep] for r in rows], "summary")


def _modules_label(mods: list[str], most: int = 2) -> str:
    shown = ", ".join(mods[:most])
    return shown + (f" +{len(mods) - most}" if len(mods) > most else "")


def group_labels(details: dict[str, Any]) -> dict[str, str]:
    """``{"group 3": "block.body.0.0, stem.0.0 +2"}``: a score key's coupled module names,
    from ``details["groups"]`` (analyze and structured prune)."""
    out = {}
    for row in details.get("groups") or []:
        if isinstance(row, dict) and "group" in row:
            mods = row.get("coupled") or row.get("modules") or []
            if mods:
                out[f"group {row['group']}"] = _modules_label(list(mods))
    return out


def _score_key(row: dict[str, Any]) -> str | None:
    return next((k for k in row if k.endswith("_mean") or k == "mean_score"), None)


def _groups_table(rows: list[dict[str, Any]]) -> str:
    """Channel groups: size (kept), coupled modules, score; protected ones folded away."""
    key = _score_key(rows[0]) if rows else None
    header = ["group", "kind", "size"] + (["kept"] if "kept" in rows[0] else [])
    header += ["coupled modules", key.removesuffix("_mean") if key else "score"]

    def cells(r: dict[str, Any]) -> list[Any]:
        score = r.get(key) if key else None
        mods = r.get("coupled") or r.get("modules") or []
        out = [r["group"], r.get("kind", ""), r.get("size", "")]
        out += [r["kept"]] if "kept" in r else []
        return out + [", ".join(mods), "–" if score is None else f"{score:.4g}"]

    open_ = [cells(r) for r in rows if r.get("prunable", True)]
    shut = [cells(r) + [r.get("why_protected") or ""] for r in rows if not r.get("prunable", True)]
    text = ("kind", "coupled modules", "why protected")
    html_ = _table(header, open_, "groups", text) if open_ else "<p>no prunable groups</p>"
    if shut:
        html_ += (
            f"<details><summary>{len(shut)} protected groups</summary>"
            + _table(header + ["why protected"], shut, "groups", text)
            + "</details>"
        )
    return html_


def block_criteria(rows: list[dict[str, Any]]) -> list[str]:
    """The criterion columns of a :func:`~netsculpt.importance.blocks.block_table`."""
    return [k for k in rows[0] if k not in BLOCK_FIXED] if rows else []


def _blocks_table(rows: list[dict[str, Any]]) -> str:
    crit = block_criteria(rows)

    def num(v: Any) -> str:
        return "–" if v is None or (isinstance(v, float) and v != v) else f"{v:.4g}"

    body = [
        [r["block"], r.get("kind", ""), f"{r.get('params', 0):,}", f"{r.get('macs', 0):,}"]
        + [num(r.get(c)) for c in crit]
        + [r.get("how", "")]
        for r in rows
    ]
    header = ["block", "kind", "params", "MACs", *crit, "removal"]
    return _table(header, body, "blocks", ("kind", "removal"))


def _detail_tables(rep: Report, h: str = "h3") -> list[str]:
    d = rep.details if isinstance(rep.details, dict) else {}
    out = []
    groups = [r for r in d.get("groups") or [] if isinstance(r, dict) and "group" in r]
    if groups:
        out += [f"<{h}>Channel groups</{h}>", _groups_table(groups)]
    blocks = [r for r in d.get("blocks") or [] if isinstance(r, dict) and "block" in r]
    if blocks:
        out += [f"<{h}>Blocks (effect of removing each)</{h}>", _blocks_table(blocks)]
    return out


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


def plot_scores(
    scores: dict[str, Any], title: str, labels: dict[str, str] | None = None
) -> str | None:
    """Importance per group / block: bars for scalar scores, box plots for per-channel scores.

    ``labels`` renames the keys (``"group 3"`` → its coupled modules, :func:`group_labels`)."""
    scores = {k: _flat(v) for k, v in jsonable(scores).items()}
    scores = {k: v for k, v in scores.items() if v}
    if not scores:
        return None
    keys = list(scores)[:MAX_BARS]
    names = [(labels or {}).get(k, k) for k in keys]
    fig = _figure(7.0, max(2.0, 0.28 * len(keys) + 0.8))
    ax = fig.add_subplot()
    y = list(range(len(keys)))
    if all(len(scores[k]) == 1 for k in keys):
        ax.barh(y, [scores[k][0] for k in keys], color="#c9733a")
    else:
        ax.boxplot([scores[k] for k in keys], positions=y, vert=False, showfliers=False)
    ax.set_yticks(y, names, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("importance")
    ax.set_title(title)
    return _png(fig)


def plot_group_sizes(rows: list[dict[str, Any]]) -> str | None:
    """Width of every prunable channel group (kept part darker), labelled by its modules."""
    rows = [r for r in rows if r.get("prunable", True) and isinstance(r.get("size"), int)]
    rows = rows[:MAX_BARS]
    if not rows:
        return None
    names = [_modules_label(list(r.get("coupled") or r.get("modules") or [str(r["group"])]))
             for r in rows]  # fmt: skip
    fig = _figure(7.0, max(2.0, 0.28 * len(rows) + 0.8))
    ax = fig.add_subplot()
    y = list(range(len(rows)))
    ax.barh(y, [r["size"] for r in rows], color="#9db4d6", label="size")
    if any("kept" in r for r in rows):
        ax.barh(y, [r.get("kept", r["size"]) for r in rows], color="#2d5fa6", label="kept")
        ax.legend(fontsize=8)
    ax.set_yticks(y, names, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("channels")
    ax.set_title("width of each channel group")
    return _png(fig)


def plot_block_sensitivity(rows: list[dict[str, Any]]) -> str | None:
    """Per-block effect of removing it, one panel per criterion, labelled by block name."""
    crit = block_criteria(rows)
    rows = rows[:MAX_BARS]
    if not crit or not rows:
        return None
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    fig = _figure(min(12.0, 2.0 + 2.2 * len(crit)), max(2.0, 0.26 * len(rows) + 1.0))
    y = list(range(len(rows)))
    for i, c in enumerate(crit):
        ax = fig.add_subplot(1, len(crit), i + 1)
        vals = [r.get(c) if isinstance(r.get(c), (int, float)) else float("nan") for r in rows]
        ax.barh(y, vals, color="#c9733a")
        ax.set_yticks(y, [r["block"] for r in rows] if i == 0 else [], fontsize=9)
        ax.invert_yaxis()
        ax.set_title(c, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(3))  # a narrow panel: few ticks, short labels
        ax.xaxis.set_major_formatter(FormatStrFormatter("%.2g"))
    fig.suptitle("block sensitivity (higher: removing it hurts more)", fontsize=11, y=1.07)
    return _png(fig)


def metric_points(rep: Report) -> list[tuple[str, float, float, str]]:
    """``(label, cost, metric, cost_name)`` for the start of a run and after each step."""
    cost = (
        "macs" if rep.before.macs is not None or any(s.after.macs for s in rep.steps) else "params"
    )
    pts: list[tuple[str, float, float, str]] = []
    snaps = [("start", rep.steps[0].before if rep.steps else rep.before)]
    for i, s in enumerate(rep.steps):  # a step's before: the start when nothing was measured yet
        snaps += [("", s.before), (f"{i + 1}. {s.op}", s.after)]
    snaps += [] if rep.steps else [(rep.op, rep.after)]
    last = None  # a step that does not measure the cost (heal) leaves it as it was
    for label, snap in snaps:
        c = getattr(snap, cost)
        last = c if c is not None else last
        if last is None or snap.metric is None or (not label and pts):
            continue
        pts.append((label or "start", float(last), float(snap.metric), cost))
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
        d = step.details if isinstance(step.details, dict) else {}
        label = f"{i + 1}. {step.op}" if rep.steps else step.op
        scores = d.get("scores")
        if isinstance(scores, dict) and scores:
            labels = group_labels(d)
            what = "importance per channel group" if labels else "importance"
            out.append(plot_scores(scores, f"{what} ({label})", labels))
        if not rep.steps and not rep.layers_before and d.get("groups"):
            out.append(plot_group_sizes(d["groups"]))
        if d.get("blocks"):
            out.append(plot_block_sensitivity(d["blocks"]))
        if rep.steps:
            out.append(plot_trace(step))  # an optimize step of a run: its search trace
    return [p for p in out if p]


def _step_section(i: int | None, rep: Report) -> str:
    title = rep.op if i is None else f"{i + 1}. {rep.op}"
    parts = [f"<h3>{_esc(title)}</h3>"]
    if rep.config:
        config = jsonable(rep.config)
        set_ = {k: v for k, v in config.items() if v not in (None, False, [], {}, "")}
        shown = " · ".join(f"{k}={json.dumps(v)}" for k, v in set_.items())
        parts.append(f'<p class="config">{_esc(shown)}</p>')
        full = json.dumps(config, indent=1)
        parts.append(f"<details><summary>config</summary><pre>{_esc(full)}</pre></details>")
    parts += [f'<p class="note">{_esc(n)}</p>' for n in rep.notes]
    if i is not None:
        parts += _detail_tables(rep, "h4")
    details = {k: v for k, v in jsonable(rep.details).items() if k != "scores"}
    if details:
        text = json.dumps(details, indent=1)
        if len(text) > 20_000:
            text = text[:20_000] + "\n…"
        parts.append(f"<details><summary>details</summary><pre>{_esc(text)}</pre></details>")
    return "\n".join(parts)


def render_html(rep: Report) -> str:
    """The whole page as a string."""
    body = [f"<h1>netsculpt {_esc(rep.op)}</h1>", "<h2>Summary</h2>", _summary(rep)]
    if not rep.steps:
        body += _detail_tables(rep)
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
