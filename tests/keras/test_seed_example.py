"""examples/seed_example_keras.py runs end to end (a few epochs instead of the seed's 100)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed_example_keras.py"


def test_seed_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETSCULPT_SEED_EPOCHS", "2")
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE)])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    text = capsys.readouterr().out
    for op in ("prune", "cut", "merge", "grow"):
        assert f"netsculpt {op}" in text
    assert "trained 2 epochs" in text
    assert 'Model: "sequential' in text
    assert "final: mse" in text
