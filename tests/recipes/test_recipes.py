from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from netsculpt import recipes
from netsculpt.cli import main
from netsculpt.errors import InputError
from netsculpt.io import load
from netsculpt.recipes import load_recipe, run
from netsculpt.report import Report, Snapshot

EXAMPLES = Path(__file__).parents[2] / "examples" / "recipes"


def shrink(model: nn.Module, example_inputs, *, keep: int = 8, data=None) -> Report:
    """A fake structural op: keeps the first ``keep`` hidden units of a 2-layer MLP."""
    if keep > model[0].out_features:
        raise InputError(f"shrink: keep={keep} is more than the layer has")
    before = Snapshot(params=sum(p.numel() for p in model.parameters()))
    with torch.no_grad():
        fc1, fc2 = model[0], model[2]
        fc1.weight = nn.Parameter(fc1.weight[:keep].clone())
        fc1.bias = nn.Parameter(fc1.bias[:keep].clone())
        fc2.weight = nn.Parameter(fc2.weight[:, :keep].clone())
        fc1.out_features = fc2.in_features = keep
    after = Snapshot(params=sum(p.numel() for p in model.parameters()))
    model(example_inputs)
    return Report(op="shrink", config={"keep": keep, "had_data": data is not None},
                  before=before, after=after)  # fmt: skip


@pytest.fixture
def fake_op(monkeypatch):
    monkeypatch.setitem(recipes.OPS, "shrink", shrink)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    x = torch.randn(200, 6)
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    return model, TensorDataset(x, y), x[:1]


RECIPE = {
    "steps": [
        {"heal": {"epochs": 3, "lr": 0.01, "val_fraction": 0.1}},
        {"evaluate": {}},
        {"shrink": {"keep": 4}},
        {"heal": {"epochs": 2, "teacher": "original", "lr": 0.01}},
        {"evaluate": {"metric": "accuracy"}},
    ]
}


def test_run_executes_steps_in_order_and_writes_output(fake_op, setup, tmp_path):
    model, data, x = setup
    rep = run(RECIPE, model=model, data=data, example_inputs=x, output=tmp_path, progress=False)
    assert [s.op for s in rep.steps] == ["heal", "evaluate", "shrink", "heal", "evaluate"]
    assert model[0].out_features == 4  # edited in place
    assert rep.steps[2].config == {"keep": 4, "had_data": True}  # data injected for calibration
    assert rep.steps[3].config["teacher"] == "original" and rep.steps[3].config["loss"] == "both"
    assert rep.steps[4].after.macs is not None and rep.steps[4].after.metric is not None
    assert rep.after.params < rep.before.params
    assert (
        rep.layers_before["0"]["out_features"] == 16 and rep.layers_after["0"]["out_features"] == 4
    )
    saved = json.loads((tmp_path / "report.json").read_text())
    assert len(saved["steps"]) == 5
    assert "<table" in (tmp_path / "report.html").read_text()
    assert any(p.suffix == ".safetensors" for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "recipe, match",
    [
        ({"steps": [], "modle": "x"}, r"unknown key 'modle'"),
        (
            {"steps": [{"heal": {}}, {"heal": {"epoch": 3}}]},
            r"steps\[1\]\.heal: unknown key 'epoch'",
        ),
        (
            {"steps": [{"evaluate": {"metrc": "loss"}}]},
            r"steps\[0\]\.evaluate: unknown key 'metrc'",
        ),
        ({"steps": [{"heal": {"lr": "fast"}}]}, r"steps\[0\]\.heal\.lr"),
        ({"steps": [{"explode": {}}]}, r"steps\[0\]: unknown op 'explode'"),
        ({"steps": [{"heal": {}, "evaluate": {}}]}, r"steps\[0\]: a step has exactly one op"),
        ({"model": "x"}, r"missing key 'steps'"),
    ],
)
def test_validation_names_the_key_and_the_step(recipe, match):
    with pytest.raises(InputError, match=match):
        load_recipe(recipe)


def test_fake_op_options_are_checked_from_its_signature(fake_op):
    with pytest.raises(InputError, match=r"steps\[0\]\.shrink: unknown key 'kep'"):
        load_recipe({"steps": [{"shrink": {"kep": 3}}]})
    assert load_recipe({"steps": [{"shrink": None}]}).steps[0] == {"shrink": {}}


def test_yaml_file_and_errors_during_a_step(tmp_path, fake_op, setup):
    model, data, x = setup
    path = tmp_path / "r.yaml"
    path.write_text("steps:\n  - shrink: {keep: 99}\n")
    with pytest.raises(InputError, match=r"^recipe steps\[0\] shrink: shrink: keep=99"):
        run(path, model=model, data=data, example_inputs=x, progress=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [\n")
    with pytest.raises(InputError, match="bad.yaml.*not valid YAML"):
        load_recipe(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_builtin_model_and_data_through_the_cli(tmp_path, capsys):
    path = tmp_path / "digits.yaml"
    out = tmp_path / "out"
    path.write_text(
        "model: digits-mlp\ndata: digits\nsteps:\n"
        "  - heal: {epochs: 2, lr: 0.01, progress: false}\n  - evaluate: {}\n"
    )
    assert main(["run", str(path), "-o", str(out), "-q"]) == 0
    assert "evaluate" in capsys.readouterr().out
    saved = json.loads((out / "report.json").read_text())
    assert saved["steps"][1]["after"]["metric"] > 0.5  # trained from random init
    assert main(["run", str(path), "--check"]) == 0


def test_cli_reports_recipe_errors_on_one_line(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text("model: digits-mlp\nsteps:\n  - heal: {epochz: 1}\n")
    assert main(["run", str(path), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key 'epochz'" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_recipes_validate(path):
    import yaml

    names = {next(iter(step)) for step in yaml.safe_load(path.read_text())["steps"]}
    for name in names:
        try:
            recipes.get_op(name)
        except InputError:
            pytest.skip(f"{name} is not available yet")
    assert load_recipe(path).steps


def test_prune_heal_recipe_end_to_end(tmp_path):
    try:
        recipes.get_op("prune")
    except InputError:
        pytest.skip("prune is not available yet")
    recipe = {
        "model": "digits-mlp",
        "data": "digits",
        "steps": [
            {"train": {"epochs": 3, "lr": 0.01, "progress": False}},
            {"prune": {"amount": 0.5, "importance": "l2"}},
            {"heal": {"epochs": 1, "teacher": "original", "progress": False}},
            {"evaluate": {}},
        ],
    }
    rep = run(recipe, output=tmp_path, progress=False)
    assert [s.op for s in rep.steps] == ["train", "prune", "heal", "evaluate"]
    assert rep.steps[1].after.macs < rep.steps[1].before.macs
    assert rep.steps[3].after.macs == rep.steps[1].after.macs and rep.after.metric > 0.5
    assert load(tmp_path)(torch.rand(2, 64)).shape == (2, 10)  # saved with its manifest
