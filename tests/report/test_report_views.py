"""Reports worth opening: 80-column console tables, sparsity of unstructured / N:M prunes,
analyze's groups and blocks in the HTML page, measured latency, a recipe's total."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.cli import main
from netsculpt.report import Report, Snapshot
from netsculpt.report.html import group_labels


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
    )


def _wide_run() -> Report:
    """A run with every column measured: the widest table there is."""

    def snap(p, m, lat, size, acc):
        return Snapshot(params=p, macs=m, latency_ms=lat, size_bytes=size, metric=acc,
                        metric_name="accuracy")  # fmt: skip

    prune = Report(op="prune", before=snap(25_557_032, 4_089_184_256, 41.7, 102_000_000, 0.761),
                   after=snap(6_920_000, 1_050_000_000, 15.2, 27_700_000, 0.702))  # fmt: skip
    sparse = Report(op="prune", before=snap(6_920_000, 1_050_000_000, 15.2, 27_700_000, 0.702),
                    after=snap(6_920_000, 1_050_000_000, 15.0, 27_700_000, 0.69),
                    details={"sparsity": 0.5, "nonzero_params": 3_460_000})  # fmt: skip
    heal = Report(op="heal", before=snap(6_920_000, None, None, None, 0.69),
                  after=snap(6_920_000, None, None, None, 0.751))  # fmt: skip
    run = Report.combine([prune, sparse, heal])
    run.notes.append("saved model and report to out/a-rather-long-folder-name/for/the/report")
    return run


def test_console_tables_fit_80_columns():
    text = _wide_run().render(width=80)
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= 80, text
    assert all(ln == ln.rstrip() for ln in lines)
    for part in ("total", "×0.27", "latency", "sparsity", "50%", "3.46M", "nonzero", "accuracy"):
        assert part in text, part
    wide = _wide_run().render(width=200)
    assert "25.6M → 6.92M (×0.27)" in wide and max(len(ln) for ln in wide.splitlines()) <= 200
    assert max(len(ln) for ln in _wide_run().render(width=120).splitlines()) <= 120


def test_unmeasured_columns_are_left_out():
    rep = Report(op="prune", before=Snapshot(params=100), after=Snapshot(params=50))
    text = rep.render(width=80)
    assert "params" in text and "latency" not in text and "MACs" not in text


def test_two_four_prune_reports_sparsity_and_nonzero_params():
    model = _mlp()
    rep = ns.prune(model, torch.randn(1, 16), pattern="2:4")
    assert rep.details["sparsity"] == pytest.approx(0.5, abs=0.01)
    text = rep.render(width=80)
    assert "sparsity" in text and "50%" in text and "nonzero" in text
    assert "sparsity" in rep.to_html() and "nonzero" in rep.to_html()


def test_analyze_page_has_groups_blocks_and_named_plots():
    pytest.importorskip("matplotlib")
    model = _mlp()
    rep = ns.analyze(model, torch.randn(4, 16), blocks=True)
    labels = group_labels(rep.details)
    assert labels and all(not re.fullmatch(r"group \d+", v) for v in labels.values())
    assert any(v.startswith("0") or ", " in v for v in labels.values())  # module names
    page = rep.to_html()
    assert '<table class="groups">' in page and '<table class="blocks">' in page
    criteria = [k for k in rep.details["blocks"][0] if k in ("kl", "influence", "angular")]
    assert criteria and all(f"<th>{c}</th>" in page for c in criteria)
    assert page.count("data:image/png;base64,") >= 3  # importance, group widths, sensitivity


def test_cli_latency_flag_measures_before_and_after(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["prune", "digits-mlp", "--amount", "0.5", "--latency", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"\d ?ms", text) and "latency" in text
    report = tmp_path / "r.json"
    assert main(["prune", "digits-mlp", "--amount", "0.5", "--report", str(report)]) == 0
    assert Report.from_json(report).before.latency_ms is None  # only timed when asked


def test_recipe_total_starts_at_the_first_evaluation():
    recipe = {
        "model": "digits-mlp",
        "data": "digits",
        "steps": [
            {"train": {"steps": 5, "lr": 0.01}},
            {"evaluate": {}},
            {"prune": {"amount": 0.5}},
            {"evaluate": {}},
        ],
    }
    rep = ns.run(recipe, progress=False)
    train, first = rep.steps[0], rep.steps[1]
    assert rep.before.metric == pytest.approx(first.after.metric)
    assert rep.before.metric != pytest.approx(train.before.metric)  # not the random init
    assert rep.after.metric == pytest.approx(rep.steps[-1].after.metric)


def test_metric_vs_cost_starts_at_the_first_evaluation_and_carries_the_cost():
    """prune (no metric) -> optimize (metric, MACs) -> heal (metric, no MACs): three points, the
    start at the optimize's before and the heal at the MACs the optimize left."""
    from netsculpt.report.html import metric_points

    def snap(macs=None, acc=None):
        return Snapshot(params=1, macs=macs, metric=acc, metric_name="accuracy" if acc else None)

    run = Report.combine(
        [
            Report(op="prune", before=snap(900), after=snap(900)),
            Report(op="optimize", before=snap(900, 1.0), after=snap(500, 0.99)),
            Report(op="heal", before=snap(acc=0.98), after=snap(acc=1.0)),
        ]
    )
    assert metric_points(run) == [
        ("start", 900.0, 1.0, "macs"),
        ("2. optimize", 500.0, 0.99, "macs"),
        ("3. heal", 500.0, 1.0, "macs"),
    ]


def test_a_run_page_plots_the_search_trace_of_its_optimize_step():
    pytest.importorskip("matplotlib")
    trace = [{"macs": 900, "accuracy": 1.0}, {"macs": 500, "accuracy": 0.99}]

    def page(details):
        step = Report(op="optimize", before=Snapshot(params=2), after=Snapshot(params=1),
                      details=details)  # fmt: skip
        return Report.combine([step]).to_html()

    assert page({"trace": trace}).count("<img") == page({}).count("<img") + 1
