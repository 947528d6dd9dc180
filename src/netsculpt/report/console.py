"""Console view of a :class:`~netsculpt.report.Report`: one rich table, before → after.

Columns nobody measured (all "–") are left out; an unstructured or N:M prune adds a
``sparsity`` column (zeros and nonzero params). Below 100 columns (an 80-column pipe) the cells
are compact: ``6.57K→2.78K`` on one line and the ratio on the next.
"""

from __future__ import annotations

import io
import shutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from netsculpt.report.core import Report, Snapshot

COLUMNS = ("params", "macs", "latency_ms", "size_bytes")
HEADERS = {"params": "params", "macs": "MACs", "latency_ms": "latency", "size_bytes": "size"}
COMPACT_BELOW = 100  # console width under which cells are compact
DASH = "–"


def human(value: float | None, kind: str = "count") -> str:
    """Short human form: ``1.23M`` for counts, ``4.5 ms``, ``1.2 MB``.

    Example::

        human(1_234_567)   # "1.23M"
    """
    if value is None:
        return DASH
    if kind == "latency_ms":
        return f"{value:.3g} ms"
    if kind == "metric":
        return f"{value:.4g}"
    base, units = (1024.0, ["B", "KB", "MB", "GB", "TB"]) if kind == "size_bytes" else (
        1000.0, ["", "K", "M", "G", "T"]
    )  # fmt: skip
    v, i = float(value), 0
    while abs(v) >= base and i < len(units) - 1:
        v, i = v / base, i + 1
    if kind == "size_bytes":
        return f"{v:.3g} {units[i]}"
    return f"{v:.3g}{units[i]}" if i else f"{v:.0f}"


def change(
    before: float | None, after: float | None, kind: str, compact: bool = False, stacked=False
) -> str:
    """``"1.2M → 600K (×0.50)"``; a single value when only one side is known.

    ``compact``: ``"1.2M→600K"`` and the ratio on a second line; ``stacked``: before, ``→ after``
    and the ratio on three lines (for narrow consoles).
    """
    compact = compact or stacked
    if before is None and after is None:
        return DASH
    if before is None or after is None or before == after:
        return _short(human(after if after is not None else before, kind), compact)
    b, a = _short(human(before, kind), compact), _short(human(after, kind), compact)
    if kind != "metric" and before:
        delta = f"×{after / before:.2f}"
    elif kind == "metric":
        delta = f"{after - before:+.3g}"
    else:
        delta = ""
    if stacked:
        return f"{b}\n→{a}" + (f"\n{delta}" if delta else "")
    if compact:
        return f"{b}→{a}" + (f"\n{delta}" if delta else "")
    return f"{b} → {a}" + (f" ({delta})" if delta else "")


def _short(text: str, compact: bool) -> str:
    return text.replace(" ", "") if compact else text


def sparsity_text(rep: Report, compact: bool = False, stacked: bool = False) -> str | None:
    """``"50% (3.34K nonzero)"`` from ``details["sparsity"]`` / ``["nonzero_params"]``."""
    d = rep.details if isinstance(rep.details, dict) else {}
    s = d.get("sparsity")
    if not isinstance(s, (int, float)):
        return None
    nz = d.get("nonzero_params")
    text = f"{s:.0%}" if s == 0 or s >= 0.01 else f"{s:.2%}"
    if isinstance(nz, int) and (compact or stacked):
        text += f"\n{human(nz)}" + ("\n" if stacked else " ") + "nonzero"
    elif isinstance(nz, int):
        text += f" ({human(nz)} nonzero)"
    return text


def _total_sparsity(rep: Report) -> Any:
    """The last step's sparsity, unless a later step changed the parameter count."""
    last = None
    for step in rep.steps:
        if sparsity_text(step) is not None:
            last = step
        elif last is not None and step.after.params not in (None, last.after.params):
            last = None
    return last


def _metric_header(snaps: list[Snapshot]) -> str:
    names = sorted({s.metric_name for s in snaps if s.metric_name})
    return "metric" if len(names) != 1 else names[0]


def _cells(rep: Report, label: str, mode: str, sparse: Report | None) -> dict[str, str]:
    compact, stacked = mode == "compact", mode == "stacked"
    cells = {"op": label}
    for col in COLUMNS:
        b, a = getattr(rep.before, col), getattr(rep.after, col)
        cells[col] = change(b, a, col, compact, stacked)
    source = sparse if sparse is not None else rep
    cells["sparsity"] = sparsity_text(source, compact, stacked) or DASH
    cells["metric"] = change(rep.before.metric, rep.after.metric, "metric", compact, stacked)
    return cells


def _width(rows: list[dict[str, str]], headers: dict[str, str], keys: list[str]) -> int:
    """The table's width in characters (heavy-head box, padding 1)."""
    widest = [
        max(len(line) for r in rows for line in [headers[k], *r[k].split("\n")]) for k in keys
    ]
    return sum(widest) + 3 * len(keys) + 1


def table(rep: Report, width: int | None = None) -> Table:
    """The rich table: one row per step of a run, then the total; one row for a single op.

    ``width``: the console width it is for. Below :data:`COMPACT_BELOW` the cells are compact,
    and stacked on three lines when even that does not fit."""
    from rich.table import Table

    steps = rep.steps or []
    snaps = [rep.before, rep.after] + [s for r in steps for s in (r.before, r.after)]
    headers = {"op": "op", **HEADERS, "sparsity": "sparsity", "metric": _metric_header(snaps)}
    modes = ["wide", "compact", "stacked"]  # the first that fits
    if width is None:
        modes = modes[:1]
    elif width < COMPACT_BELOW:
        modes = modes[1:]
    for mode in modes:
        rows = [_cells(s, f"{i + 1}. {s.op}", mode, None) for i, s in enumerate(steps)]
        sparse = _total_sparsity(rep) if steps else None
        total = _cells(rep, "total" if steps else rep.op, mode, sparse)
        keys = ["op", *COLUMNS, "sparsity", "metric"]
        used = [*rows, total]
        shown = [k for k in keys if k in ("op", "params") or any(r[k] != DASH for r in used)]
        if width is None or _width(used, headers, shown) <= width:
            break
    t = Table(title=f"netsculpt {rep.op}", title_justify="left")
    for k in shown:
        left = k == "op"
        t.add_column(
            headers[k], justify="left" if left else "right", style="bold" if left else None
        )
    for r in rows:
        t.add_row(*[r[k] for k in shown])
    if rows:
        t.add_section()
    t.add_row(*[total[k] for k in shown])
    notes = list(rep.notes) + [f"{s.op}: {n}" for s in steps for n in s.notes]
    if notes:
        t.caption = "\n".join(notes)
        t.caption_justify = "left"
    return t


class ReportTable:
    """A rich renderable that lays the table out for the console it is printed on."""

    def __init__(self, rep: Report) -> None:
        self.rep = rep

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield table(self.rep, width=options.max_width)


def console_width() -> int:
    """This terminal's width; ``$COLUMNS`` or 80 in a pipe."""
    return shutil.get_terminal_size((80, 24)).columns


def render_text(rep: Report, width: int | None = None) -> str:
    """The table as plain text (no colour codes, no trailing spaces); ``width`` defaults to
    :func:`console_width`."""
    from rich.console import Console

    width = width or console_width()
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False)
    console.print(table(rep, width=width))
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip().splitlines()) + "\n"


# -- analyze: channel groups and blocks -------------------------------------------------------
def groups_table(rows: list[dict[str, Any]], importance: str, title: str, show_all: bool = False):
    """``netsculpt analyze``'s channel groups: size, prunable (or why not), coupled modules,
    mean score. Module lists wrap instead of widening the table."""
    from rich.table import Table

    t = Table(title=title)
    t.add_column("group", justify="right")
    t.add_column("kind")
    t.add_column("size", justify="right")
    t.add_column("prunable", overflow="fold")
    t.add_column("coupled modules", overflow="fold", ratio=1)
    t.add_column(importance, justify="right")
    for r in rows:
        if not r["prunable"] and not show_all:
            continue
        mods = r["coupled"]
        coupled = ", ".join(mods[:3]) + (f" +{len(mods) - 3}" if len(mods) > 3 else "")
        score = r.get(f"{importance}_mean")
        t.add_row(
            str(r["group"]),
            r["kind"],
            str(r["size"]),
            "yes" if r["prunable"] else f"no: {r['why_protected']}",
            coupled,
            DASH if score is None else f"{score:.4g}",
        )
    return t


BLOCK_FIXED = ("block", "kind", "params", "macs", "in_shape", "out_shape", "removable", "how")
SHORT = {"influence": "infl", "angular": "angle"}  # criterion headers in a narrow console


def blocks_table(rows: list[dict[str, Any]], width: int | None = None):
    """``netsculpt analyze --blocks``: each block's size and every criterion's score. Reasons a
    block cannot be removed go under the table (numbered), so the columns stay narrow."""
    from rich.table import Table

    width = width or console_width()
    crit = [k for k in rows[0] if k not in BLOCK_FIXED] if rows else []
    compact = width < COMPACT_BELOW
    t = Table(title="blocks (effect of removing each; higher hurts more)", title_justify="left")
    t.add_column("block", no_wrap=True)
    if not compact:
        t.add_column("kind")
    t.add_column("params", justify="right")
    t.add_column("MACs", justify="right")
    for c in crit:
        t.add_column(SHORT.get(c, c) if compact else c, justify="right")
    t.add_column("removal", overflow="fold")
    reasons: list[str] = []
    for r in rows:
        how = str(r.get("how", ""))
        if compact and r.get("removable") is False and len(how) > 8:
            reasons.append(f"[{len(reasons) + 1}] {r['block']}: {how}")
            how = f"no [{len(reasons)}]"
        cells = [r["block"]] + ([] if compact else [r.get("kind", "")])
        cells += [human(r.get("params")), human(r.get("macs"))]
        cells += [_score(r.get(c), compact) for c in crit]
        t.add_row(*cells, how)
    if reasons:
        t.caption, t.caption_justify = "\n".join(reasons), "left"
    return t


def _score(v: Any, compact: bool) -> str:
    if not isinstance(v, (int, float)) or v != v:  # None or NaN
        return DASH
    return f"{v:.2g}" if compact else f"{v:.4g}"
