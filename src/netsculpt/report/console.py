"""Console view of a :class:`~netsculpt.report.Report`: one rich table, before → after."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from netsculpt.report.core import Report, Snapshot

COLUMNS = ("params", "macs", "latency_ms", "size_bytes")
HEADERS = {"params": "params", "macs": "MACs", "latency_ms": "latency", "size_bytes": "size"}


def human(value: float | None, kind: str = "count") -> str:
    """Short human form: ``1.23M`` for counts, ``4.5 ms``, ``1.2 MB``.

    Example::

        human(1_234_567)   # "1.23M"
    """
    if value is None:
        return "–"
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


def change(before: float | None, after: float | None, kind: str) -> str:
    """``"1.2M → 600K (×0.50)"``; a single value when only one side is known."""
    if before is None and after is None:
        return "–"
    if before is None or after is None or before == after:
        return human(after if after is not None else before, kind)
    text = f"{human(before, kind)} → {human(after, kind)}"
    if kind != "metric" and before:
        text += f" (×{after / before:.2f})"
    elif kind == "metric":
        text += f" ({after - before:+.3g})"
    return text


def _metric_header(snaps: list[Snapshot]) -> str:
    names = sorted({s.metric_name for s in snaps if s.metric_name})
    return "metric" if len(names) != 1 else names[0]


def _row(rep: Report, label: str) -> list[str]:
    cells = [label]
    for col in COLUMNS:
        cells.append(change(getattr(rep.before, col), getattr(rep.after, col), col))
    cells.append(change(rep.before.metric, rep.after.metric, "metric"))
    return cells


def table(rep: Report) -> Table:
    """The rich table: one row per step of a run, then the total; one row for a single op."""
    from rich.table import Table

    rows = rep.steps or []
    snaps = [rep.before, rep.after] + [s for r in rows for s in (r.before, r.after)]
    t = Table(title=f"netsculpt {rep.op}", title_justify="left")
    t.add_column("op", style="bold")
    for col in COLUMNS:
        t.add_column(HEADERS[col], justify="right")
    t.add_column(_metric_header(snaps), justify="right")
    for i, step in enumerate(rows):
        t.add_row(*_row(step, f"{i + 1}. {step.op}"))
    if rows:
        t.add_section()
        t.add_row(*_row(rep, "total"))
    else:
        t.add_row(*_row(rep, rep.op))
    notes = list(rep.notes) + [f"{s.op}: {n}" for s in rows for n in s.notes]
    if notes:
        t.caption = "\n".join(notes)
        t.caption_justify = "left"
    return t


def render_text(rep: Report, width: int = 110) -> str:
    """The table as plain text (no colour codes)."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False)
    console.print(table(rep))
    return buf.getvalue().rstrip() + "\n"
