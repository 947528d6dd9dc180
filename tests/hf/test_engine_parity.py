"""One engine: a Hugging Face model pruned in memory (``ns.prune``, ``netsculpt.hf.prune``, the
CLI) and its checkpoint pruned shard by shard (``prune_pretrained``, ``--sharded``) get the
same plan, the same architecture and the same params / MACs in the report."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import netsculpt as ns
import netsculpt.hf as nhf
from netsculpt.cli import main
from netsculpt.errors import InputError
from netsculpt.hf.io import example_inputs

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", message=".*token_id.*")

CONFIG = dict(
    vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
    bos_token_id=1, eos_token_id=2, pad_token_id=0,
)  # fmt: skip


@pytest.fixture
def checkpoint(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**CONFIG)).eval()
    model.save_pretrained(tmp_path / "src", max_shard_size="50KB")
    return tmp_path / "src"


def _loaded(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path).eval()


def _shapes(model) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _sizes(rep) -> tuple:
    return (rep.before.params, rep.before.macs, rep.after.params, rep.after.macs)


def test_in_memory_and_shard_by_shard_give_one_plan_architecture_and_report(checkpoint, tmp_path):
    model = _loaded(checkpoint)
    x = example_inputs(model)
    assert tuple(x["input_ids"].shape) == (1, 8)
    mem = ns.prune(model, x, amount=0.5, targets=("heads", "mlp"), uniform=True, importance="l2")
    shard = nhf.prune_pretrained(checkpoint, tmp_path / "dst", amount=0.5, importance="l2")

    assert mem.plan.to_dict()["actions"] == shard.plan.to_dict()["actions"]
    assert len(mem.plan.actions) == 4  # 2 layers × (heads, MLP)
    assert _sizes(mem) == _sizes(shard)
    assert mem.after.params < mem.before.params and mem.after.macs < mem.before.macs
    assert mem.details["removed"] == shard.details["removed"]
    assert _shapes(model) == _shapes(_loaded(tmp_path / "dst"))
    assert shard.config["mode"] == "hf-sharded" and shard.details["hf_compatible"] is True

    again = _loaded(checkpoint)  # netsculpt.hf.prune: ns.prune with the HF defaults
    hf = nhf.prune(again, x, amount=0.5)
    assert hf.plan.to_dict()["actions"] == mem.plan.to_dict()["actions"]
    assert _sizes(hf) == _sizes(mem) and hf.details["hf_compatible"] is True
    assert hf.details["layers"] == shard.details["layers"]


def test_uniform_prune_that_would_leave_a_group_whole_is_refused(checkpoint, monkeypatch):
    import netsculpt.surgery as surgery

    model = _loaded(checkpoint)
    x = example_inputs(model)

    def refuses(model, graph, plan, example_inputs, *, check=None):
        g = min(plan)
        return surgery.remove_channels(model, graph, {k: v for k, v in plan.items() if k != g},
                                       example_inputs), {g: "simulated"}  # fmt: skip

    monkeypatch.setattr(surgery, "remove_channels_safely", refuses)
    before = _shapes(model)
    with pytest.raises(InputError, match="uniform pruning needs every planned group"):
        nhf.prune(model, x, amount=0.5)
    assert _shapes(model) == before  # nothing was left half done
    rep = nhf.prune(model, x, amount=0.5, uniform=False)  # not uniform: that group stays whole
    assert any(n.startswith("kept ") for n in rep.notes)


def test_cli_in_memory_and_sharded_report_the_same_sizes(checkpoint, tmp_path, capsys):
    mem, shard = tmp_path / "mem.json", tmp_path / "shard.json"
    argv = ["prune", str(checkpoint), "--amount", "0.5"]
    assert main([*argv, "-o", str(tmp_path / "a"), "--report", str(mem)]) == 0
    assert main([*argv, "--sharded", "-o", str(tmp_path / "b"), "--report", str(shard)]) == 0
    capsys.readouterr()
    a, b = json.loads(mem.read_text()), json.loads(shard.read_text())
    assert a["before"] == b["before"] and a["after"] == b["after"]
    assert a["config"]["targets"] == b["config"]["targets"] == ["heads", "mlp"]
    assert a["config"]["uniform"] is b["config"]["uniform"] is True
    assert a["details"]["removed"] == b["details"]["removed"]
    # heads and MLP only: the hidden size stays
    assert json.loads((tmp_path / "b" / "config.json").read_text())["hidden_size"] == 64
    assert ns.load(tmp_path / "a").config.hidden_size == 64


def test_cut_pretrained_plan_replays_in_memory(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(**(CONFIG | {"num_hidden_layers": 4}))
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "src", max_shard_size="50KB")
    rep = nhf.cut_pretrained(tmp_path / "src", tmp_path / "dst", layers=[2, 1])
    assert [a.to_dict() for a in rep.plan.actions] == [{"kind": "drop_layers", "layers": [1, 2]}]
    model = _loaded(tmp_path / "src")
    ns.apply(model, example_inputs(model), rep.plan.to_json())
    got = _loaded(tmp_path / "dst")
    assert _shapes(model) == _shapes(got) and model.config.num_hidden_layers == 2
    x = example_inputs(model)
    with torch.no_grad():
        assert torch.allclose(model(**x).logits, got(**x).logits, atol=1e-5)
