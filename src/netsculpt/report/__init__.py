"""Reports: what every op did, as a rich table, JSON and a self-contained HTML page.

Example::

    from netsculpt.report import Report, Snapshot
    rep = Report(op="prune", before=Snapshot(params=100), after=Snapshot(params=60))
    print(rep); rep.to_html("report.html")
"""

from netsculpt.report.core import Report, Snapshot, jsonable, layer_sizes

__all__ = ["Report", "Snapshot", "jsonable", "layer_sizes"]
