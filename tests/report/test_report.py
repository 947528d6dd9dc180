from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from torch import nn

from netsculpt.errors import InputError
from netsculpt.report import Report, Snapshot, jsonable, layer_sizes


def _prune_report() -> Report:
    return Report(
        op="prune",
        config={"amount": 0.5, "importance": "l2"},
        before=Snapshot(params=10_000, macs=2_000_000, metric=0.95, metric_name="accuracy"),
        after=Snapshot(params=5_000, macs=1_000_000, metric=0.90, metric_name="accuracy"),
        details={
            "removed": {"fc1": np.array([1, 2, 3])},
            "scores": {"fc1": torch.rand(16), "fc2": [0.5, 0.1], "block.0": 0.3},
        },
        notes=["kept the classifier"],
        layers_before={"fc1": {"type": "Linear", "out_features": 16}, "fc2": {"out_features": 8}},
        layers_after={"fc1": {"type": "Linear", "out_features": 8}, "fc2": {"out_features": 8}},
    )


def _heal_report() -> Report:
    return Report(
        op="heal",
        before=Snapshot(params=5_000, metric=0.90, metric_name="accuracy"),
        after=Snapshot(params=5_000, metric=0.94, metric_name="accuracy"),
    )


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


def test_ratios_and_dict_are_json_safe(tmp_path):
    rep = _prune_report()
    assert rep.ratio("params") == pytest.approx(0.5)
    assert rep.ratio("latency_ms") is None
    d = rep.to_dict()
    assert d["details"]["removed"]["fc1"] == [1, 2, 3]
    assert len(d["details"]["scores"]["fc1"]) == 16
    text = rep.to_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(text)
    again = Report.from_json(tmp_path / "r.json")
    assert again.after.params == 5_000 and again.config["importance"] == "l2"


def test_jsonable_handles_odd_values():
    out = jsonable({1: (np.float32(0.5), float("nan")), "s": {3}, "t": torch.tensor(2)})
    assert out == {"1": [0.5, None], "s": [3], "t": 2}
    json.dumps(out)


def test_render_is_a_table_with_before_after():
    text = str(_prune_report())
    assert "prune" in text and "→" in text and "×0.50" in text and "accuracy" in text
    assert "kept the classifier" in text


def test_combine_takes_first_before_and_last_after():
    run = Report.combine([_prune_report(), _heal_report()])
    assert run.op == "run" and len(run.steps) == 2
    assert run.before.params == 10_000 and run.after.params == 5_000
    assert run.before.macs == 2_000_000 and run.after.macs == 1_000_000  # filled from prune
    assert run.after.metric == pytest.approx(0.94)
    text = run.render()
    assert "1. prune" in text and "2. heal" in text and "total" in text
    assert len(run.to_dict()["steps"]) == 2


def test_html_is_self_contained_with_tables_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    run = Report.combine([_prune_report(), _heal_report()])
    page = run.to_html(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text() == page
    p = _Collect()
    p.feed(page)
    assert p.tags.count("table") >= 2
    images = [v for k, v in p.attrs if k == "src"]
    assert len(images) >= 3  # widths, metric vs cost, importance
    assert all(v.startswith("data:image/png;base64,") for v in images)
    assert not any(k in ("href",) for k, _ in p.attrs)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "fc1" in "".join(p.text)


def test_html_without_scores_or_layers_still_renders():
    page = _heal_report().to_html()
    p = _Collect()
    p.feed(page)
    assert "table" in p.tags


def test_import_and_render_do_not_pull_matplotlib():
    code = (
        "import sys; from netsculpt.report import Report, Snapshot; "
        "str(Report(op='x', before=Snapshot(params=2), after=Snapshot(params=1))); "
        "assert 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_layer_sizes_and_snapshot_of_without_inputs():
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(8, 2))
    sizes = layer_sizes(model)
    assert sizes["0"]["out_channels"] == 4 and sizes["3"]["out_features"] == 2
    assert sizes["1"]["num_features"] == 4 and "2" not in sizes
    snap = Snapshot.of(model)
    assert snap.params == sum(p.numel() for p in model.parameters())


def test_from_dict_rejects_garbage():
    with pytest.raises(InputError):
        Report.from_dict({"config": {}})
