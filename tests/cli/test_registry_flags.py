"""The op registry drives the CLI: each config field a command exposes has the flag named after
the field, the field's doc as its help, the choices of its ``one_of`` check, and an unset flag
leaves the config's own default in force (the CLI passes only what the user typed)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from netsculpt.cli import build_parser
from netsculpt.cli import cut as cli_cut
from netsculpt.cli import grow as cli_grow
from netsculpt.cli import merge as cli_merge
from netsculpt.cli import prune as cli_prune
from netsculpt.cli._common import config_overrides
from netsculpt.engine import registry

EXPOSED = {
    "prune": cli_prune.STRUCTURED + cli_prune.UNSTRUCTURED + cli_prune.COMMON,
    "cut": cli_cut.CHOICE + cli_cut.FIELDS,
    "grow": cli_grow.FIELDS,
    "merge": cli_merge.FIELDS,
}


def _command(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("op", sorted(EXPOSED))
def test_each_exposed_field_has_its_flag_help_and_choices(op):
    actions = {a.dest: a for a in _command(op)._actions}
    fields = registry.get(op).fields()
    for name in EXPOSED[op]:
        f, a = fields[name], actions[name]
        flag = "--" + name.rstrip("_").replace("_", "-")
        assert flag in a.option_strings, (op, name, a.option_strings)
        assert a.help.startswith(f.metadata["doc"]), (op, name, a.help)
        choices = getattr(f.metadata.get("check"), "choices", None)
        if choices:
            assert tuple(a.choices) == tuple(choices), (op, name)
        assert a.default is None, f"{op} --{name}: the config's default must apply when unset"


def test_unset_flags_leave_the_config_defaults():
    args = _command("cut").parse_args(["digits-mlp", "-o", "out", "--count", "1"])
    options = config_overrides(args, cli_cut.CHOICE + cli_cut.FIELDS)
    assert options == {"count": 1}
    cfg = registry.get("cut").config(None, options)
    defaults = {f.name: f.default for f in dataclasses.fields(cfg) if f.name != "count"}
    assert all(getattr(cfg, k) == v for k, v in defaults.items())


def test_old_flag_names_still_reach_the_same_fields():
    args = _command("cut").parse_args(
        ["m", "-o", "o", "--count", "2", "--criterion", "angular", "--batches", "3"]
    )
    assert config_overrides(args, cli_cut.FIELDS + cli_cut.CHOICE) == {
        "count": 2, "importance": "angular", "max_batches": 3,
    }  # fmt: skip
    args = _command("cut").parse_args(["m", "-o", "o", "--count", "1", "--no-recalibrate-bn"])
    assert config_overrides(args, cli_cut.FIELDS)["recalibrate_bn"] is False
