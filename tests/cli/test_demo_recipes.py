"""The recipes of ``netsculpt demo`` are valid, and the CNN's optimize step meets its budget."""

import copy

import pytest
import torch

from netsculpt.cli.demo import OPTIMIZE, RECIPES

DEMO_EPOCHS = 15  # netsculpt demo --epochs (its default)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_demo_recipes_validate(name):
    from netsculpt.recipes import load_recipe

    recipe = load_recipe(RECIPES[name])  # every option is one its op accepts
    assert recipe.model == name


def test_cnn_demo_runs_optimize_and_a_heal_within_one_point():
    steps = [next(iter(s)) for s in RECIPES["digits-cnn"]["steps"]]
    assert "optimize" in steps and steps.index("heal") > steps.index("optimize")
    assert OPTIMIZE["target_macs"] < 1 and OPTIMIZE["max_drop"] <= 0.01


def test_cnn_demo_optimize_step_reaches_its_macs_target():
    """The demo's optimize step on digits-cnn trained as the demo trains it (15 epochs): the
    target, not max_drop, ends the search, and the plan replays on a fresh copy. (A model
    trained for 2 epochs sits within a few held-out samples of the 1-point limit, so that
    setting passes or fails with the CPU kernels of the torch build.)"""
    import netsculpt as ns
    from netsculpt.data import train_quick
    from netsculpt.io import resolve_model

    torch.manual_seed(0)
    model, x, _ = resolve_model("digits-cnn")
    train_quick(model, "digits-image", epochs=DEMO_EPOCHS, seed=0)
    fresh = copy.deepcopy(model)
    recipe = {**RECIPES["digits-cnn"], "steps": [{"optimize": {**OPTIMIZE, "progress": False}}]}
    report = ns.run(recipe, model=model, example_inputs=x)
    step = report.steps[0]
    assert step.details["stop"] == "target", step.notes
    assert ns.measure(model, x).macs <= OPTIMIZE["target_macs"] * ns.measure(fresh, x).macs
    ns.apply(fresh, x, step.plan)
    assert [p.shape for p in fresh.parameters()] == [p.shape for p in model.parameters()]
