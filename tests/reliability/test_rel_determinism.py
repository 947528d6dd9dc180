"""Identical runs give identical results: built-in models and example inputs are the same
every time, and every command with randomness takes --seed."""

import json

import pytest
import torch

from netsculpt.cli import main
from netsculpt.io import resolve_model


@pytest.mark.parametrize("name", ["digits-cnn", "mnist1d-mlp", "resnet18"])
def test_a_model_name_gives_the_same_model_and_example_every_time(name):
    (m1, x1, _), (m2, x2, _) = resolve_model(name), resolve_model(name)
    assert torch.equal(x1, x2)
    assert all(
        torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values())
    )


def test_analyze_blocks_twice_gives_the_same_scores(tmp_path, capsys):
    reports = []
    for i in range(2):
        path = tmp_path / f"r{i}.json"
        argv = [
            "analyze",
            "digits-cnn",
            "--data",
            "digits-image",
            "--blocks",
            "--report",
            str(path),
        ]
        assert main(argv) == 0
        capsys.readouterr()
        reports.append(json.loads(path.read_text())["details"])
    assert reports[0]["blocks"] == reports[1]["blocks"]
    assert reports[0]["groups"] == reports[1]["groups"]


@pytest.mark.parametrize(
    "command", ["analyze", "prune", "cut", "grow", "merge", "heal", "optimize"]
)
def test_every_command_with_randomness_takes_a_seed(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--seed" in capsys.readouterr().out
