"""optimize from the command line and as a recipe step."""

from __future__ import annotations

import json

import pytest
import torch

import netsculpt as ns
from netsculpt.cli import main
from netsculpt.errors import InputError
from netsculpt.recipes import load_recipe, run


def test_cli_optimizes_a_builtin_model_to_a_macs_target(tmp_path, capsys):
    out, rep = tmp_path / "m", tmp_path / "r.json"
    argv = ["optimize", "digits-cnn", "--data", "digits-image", "--target-macs", "0.7",
            "--no-heal", "--seed", "1", "-o", str(out), "--report", str(rep)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "saved to" in printed.out and "target reached" in printed.out
    assert "optimize step 1:" in printed.err  # one progress line per accepted step
    saved = json.loads(rep.read_text())
    assert saved["after"]["macs"] <= 0.7 * saved["before"]["macs"]
    assert saved["details"]["trace"] and saved["plan"]["op"] == "optimize"
    model = ns.load(out)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_cli_bad_budget_is_one_line(capsys):
    assert main(["optimize", "digits-cnn", "--target-latency", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "target_latency must be > 0" in err


def test_recipe_step_is_validated_through_the_registry():
    ok = {"steps": [{"optimize": {"target_macs": 0.5, "max_drop": 0.01}}]}
    assert load_recipe(ok).steps[0]["optimize"]["target_macs"] == 0.5
    with pytest.raises(InputError, match=r"steps\[0\]\.optimize: unknown key 'amount'"):
        load_recipe({"steps": [{"optimize": {"amount": 0.5}}]})
    with pytest.raises(InputError, match="two macs targets"):
        load_recipe({"steps": [{"optimize": {"target": {"macs": 0.5}, "target_macs": 0.4}}]})


def test_recipe_runs_an_optimize_step(tmp_path):
    recipe = {
        "model": "mnist1d-cnn",
        "data": "mnist1d",
        "steps": [
            {
                "optimize": {
                    "target_params": 0.6,
                    "heal": False,
                    "progress": False,
                    "max_batches": 2,
                    "eval_batches": 2,
                }
            }
        ],  # fmt: skip
        "output": str(tmp_path / "out"),
    }
    rep = run(recipe, progress=False)
    step = rep.steps[0]
    assert step.op == "optimize" and step.after.params <= 0.6 * step.before.params


def test_html_report_shows_the_trace(tmp_path):
    from netsculpt.report import Report, Snapshot
    from netsculpt.report.trace_plot import plot_trace

    trace = [
        {"step": i, "macs": 100 - 10 * i, "accuracy": 0.9 - 0.01 * i, "proxy_kl": 0.01 * i}
        for i in range(3)
    ]
    rep = Report(op="optimize", before=Snapshot(macs=100), after=Snapshot(macs=80),
                 details={"trace": trace})  # fmt: skip
    assert plot_trace(rep).startswith("<img")
    assert plot_trace(Report(op="prune")) is None
    rep.to_html(tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text().count("<img") == 1  # the trace (no layers, no metric)
