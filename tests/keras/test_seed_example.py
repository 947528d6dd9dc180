"""examples/seed_example_keras.py runs end to end (a few epochs instead of the seed's 100)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed_example_keras.py"


def test_seed_example_runs(tmp_path):
    import netsculpt

    src = str(Path(netsculpt.__file__).resolve().parents[1])  # this checkout's netsculpt
    path = os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "NETSCULPT_SEED_EPOCHS": "2", "PYTHONPATH": path}
    env.setdefault("KERAS_BACKEND", "torch")
    res = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    for op in ("prune", "cut", "merge", "grow"):
        assert f"netsculpt {op}" in res.stdout
    assert "trained 2 epochs" in res.stdout
    assert 'Model: "sequential' in res.stdout
    assert "final: mse" in res.stdout
