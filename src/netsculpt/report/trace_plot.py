"""The Pareto trace of a search (``report.details["trace"]``, e.g. ``optimize``) as a line
plot: the held-out metric and the proxy against the cost after every accepted step."""

from __future__ import annotations

from typing import Any

QUALITY = ("accuracy", "loss", "kl")


def plot_trace(rep: Any) -> str | None:
    """An ``<img>`` of the trace, or None when the report has no trace (or one point)."""
    trace = rep.details.get("trace") if isinstance(getattr(rep, "details", None), dict) else None
    if not isinstance(trace, list) or len(trace) < 2:
        return None
    from netsculpt.report.html import _figure, _png

    cost = "latency_ms" if all("latency_ms" in r for r in trace) else "macs"
    metric = next((k for k in QUALITY if all(k in r for r in trace)), None)
    xs = [float(r[cost]) for r in trace]
    fig = _figure(6.0, 3.5)
    ax = fig.add_subplot()
    if metric is not None:
        ax.plot(xs, [float(r[metric]) for r in trace], "o-", color="#2d5fa6", label=metric)
        ax.set_ylabel(f"{metric} (held out)")
    if all("proxy_kl" in r for r in trace):
        ax2 = ax.twinx()
        ax2.plot(xs, [float(r["proxy_kl"]) for r in trace], "s--", color="#c9733a", ms=3)
        ax2.set_ylabel("proxy KL (calibration)", color="#c9733a")
    if cost == "latency_ms" and all("table_ms" in r for r in trace):
        for r in trace:
            ax.axvline(float(r["table_ms"]), color="#bbbbbb", lw=0.5, zorder=0)
    ax.set_xlabel("latency (ms, measured; grey: table)" if cost == "latency_ms" else "MACs")
    ax.invert_xaxis()  # cost falls from left to right as the search goes on
    ax.set_title("search trace: quality vs cost per accepted step")
    return _png(fig)
