"""Wanda / SparseGPT on a checkpoint folder, one decoder layer at a time: the weights equal
``ns.prune`` in memory for the same data, activations spill to disk past a budget, bad
input leaves nothing behind."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import netsculpt as ns
import netsculpt.hf as nhf
from netsculpt.cli import main
from netsculpt.errors import InputError
from netsculpt.hf.calibrated import Activations

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", message=".*token_id.*")
V = 256


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A seeded tiny LLaMA (3 layers, GQA) saved in many shards, with a tokenizer stand-in."""
    torch.set_num_threads(1)
    cfg = transformers.LlamaConfig(
        vocab_size=V, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "src"
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(path, max_shard_size="50KB")
    (path / "tokenizer.json").write_text('{"stand-in": true}')
    assert len(list(path.glob("*.safetensors"))) > 3
    return path


def _data():
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(3, V, (2, 16), generator=g)} for _ in range(3)]


def _load(path):
    model, info = transformers.AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model.eval()


@pytest.mark.parametrize(
    "importance, rule, budget",
    [("sparsegpt", {"pattern": "2:4"}, 3000), ("wanda", {"sparsity": 0.5}, None),
     ("sparsegpt", {"sparsity": 0.5}, None)],
)  # fmt: skip
def test_streamed_equals_in_memory(checkpoint, tmp_path, importance, rule, budget):
    data = _data()
    rep = nhf.prune_pretrained(checkpoint, tmp_path / "out", data=data, importance=importance,
                               activation_budget=budget, **rule)  # fmt: skip
    streamed = _load(tmp_path / "out")
    memory = _load(checkpoint)
    ns.prune(memory, data[0], data=data, importance=importance, ignore=["lm_head"],
             remove_dead=False, **rule)  # fmt: skip
    a, b = streamed.state_dict(), memory.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # identical, not close
    dense = _load(checkpoint).state_dict()
    assert torch.equal(a["lm_head.weight"], dense["lm_head.weight"])
    assert torch.equal(a["model.embed_tokens.weight"], dense["model.embed_tokens.weight"])
    for i in range(3):
        w = a[f"model.layers.{i}.mlp.down_proj.weight"]
        assert float((w == 0).float().mean()) == 0.5
        assert not torch.equal(w, dense[f"model.layers.{i}.mlp.down_proj.weight"])
    assert [r["layer"] for r in rep.details["layers"]] == [0, 1, 2]
    assert (rep.details["activations_spilled_bytes"] > 0) == (budget is not None)
    assert {a.args["step"] for a in rep.plan.actions} == {0, 1, 2}
    assert (tmp_path / "out" / "tokenizer.json").is_file()


def test_the_streamed_plan_replays_in_memory(checkpoint, tmp_path):
    data = _data()
    rep = nhf.prune_pretrained(checkpoint, tmp_path / "out", data=data, importance="wanda",
                               pattern="2:4")  # fmt: skip
    memory = _load(checkpoint)
    ns.apply(memory, data[0], rep.plan.to_dict(), data=data)
    streamed = _load(tmp_path / "out").state_dict()
    for k, v in memory.state_dict().items():
        assert torch.equal(v, streamed[k]), k


def test_activations_spill_and_come_back(tmp_path):
    acts = Activations(100, tmp_path)
    ts = [torch.randn(2, 8) for _ in range(4)]  # 64 bytes each: the second one spills
    for i, t in enumerate(ts):
        acts.put(i, t)
    assert len(acts.memory) == 1 and len(acts.on_disk) == 3 and acts.spilled == 192
    assert all(torch.equal(acts.get(i), t) for i, t in enumerate(ts))
    acts.put(1, torch.zeros(1))  # a smaller replacement fits in memory again
    assert 1 not in acts.on_disk and torch.equal(acts.get(1), torch.zeros(1))


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"importance": "sparsegpt", "sparsity": 0.5}, "needs calibration data"),
        ({"importance": "wanda", "data": True}, "sparsity= or pattern="),
        ({"importance": "wanda", "data": True, "sparsity": 0.5, "pattern": "2:4"}, "one of them"),
        ({"importance": "wanda", "data": True, "pattern": "4:2"}, "0 < N < M"),
        ({"importance": "l2", "sparsity": 0.5}, "importance='wanda' or 'sparsegpt'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(checkpoint, tmp_path, kw, message):
    if kw.get("data") is True:
        kw = {**kw, "data": _data()}
    with pytest.raises(InputError, match=message) as e:
        nhf.prune_pretrained(checkpoint, tmp_path / "out", **kw)
    assert len(str(e.value).splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_sharded_sparsegpt(checkpoint, tmp_path, capsys):
    out, report = tmp_path / "out", tmp_path / "r.json"
    argv = ["prune", str(checkpoint), "--sharded", "--importance", "sparsegpt", "--pattern",
            "2:4", "--data", "stdlib-text", "--max-batches", "1", "--activation-budget", "1KB",
            "-o", str(out), "--report", str(report)]  # fmt: skip
    assert main(argv) == 0
    assert "saved to" in capsys.readouterr().out
    w = _load(out).model.layers[2].self_attn.q_proj.weight
    assert (w.view(64, 16, 4) != 0).sum(-1).eq(2).all()
    rep = json.loads(report.read_text())
    assert rep["config"]["importance"] == "sparsegpt"
    assert rep["details"]["activations_spilled_bytes"] > 0
    assert main(["prune", str(checkpoint), "--sharded", "--importance", "wanda", "--sparsity",
                 "0.5", "-o", str(tmp_path / "o2")]) == 2  # fmt: skip
    assert "--data" in capsys.readouterr().err
