from __future__ import annotations

import json

from netsculpt.cli import main


def test_heal_then_evaluate_from_the_cli(tmp_path, capsys):
    out = tmp_path / "healed"
    report = tmp_path / "heal.json"
    args = ["heal", "digits-mlp", "--data", "digits", "--epochs", "2", "--lr", "0.01"]
    assert main([*args, "-o", str(out), "--report", str(report)]) == 0
    assert "heal" in capsys.readouterr().out
    rep = json.loads(report.read_text())
    assert rep["op"] == "heal" and rep["after"]["metric"] > 0.5
    res = tmp_path / "eval.json"
    assert main(["evaluate", str(out), "--data", "digits", "--json", str(res)]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert json.loads(res.read_text())["accuracy"] > 0.5


def test_heal_cli_errors_are_one_line(tmp_path, capsys):
    args = ["heal", "digits-mlp", "--data", "digits", "--loss", "kd", "-o", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "needs teacher" in err and len(err.splitlines()) == 1
