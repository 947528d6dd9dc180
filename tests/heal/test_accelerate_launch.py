from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from torch.utils.data import TensorDataset
    import netsculpt as ns

    torch.manual_seed(0)
    x = torch.randn(128, 8)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    rep = ns.heal(model, TensorDataset(x, y), epochs=10, lr=1e-2, progress=False)
    out = {"after": rep.after.metric, "cpu": next(model.parameters()).device.type}
    json.dump(out, open(sys.argv[1], "w"))
    """
)


def test_heal_runs_under_accelerate_launch_cpu(tmp_path):
    pytest.importorskip("accelerate")
    script, out = tmp_path / "train.py", tmp_path / "out.json"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1"]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    proc = subprocess.run(
        [*cmd, str(script), str(out)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["cpu"] == "cpu" and res["after"] > 0.8
