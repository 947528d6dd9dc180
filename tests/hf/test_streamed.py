"""Structured pruning and layer removal of a checkpoint folder from one calibrated pass, a
decoder layer at a time: the same heads / channels / layers as in memory for the same data,
the folder loads with ``from_pretrained`` and runs, bad input leaves nothing behind."""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch

import netsculpt as ns
import netsculpt.hf as nhf
from netsculpt.cli import main
from netsculpt.errors import InputError
from netsculpt.hf import streamed
from netsculpt.hf.layers import cut_layers, drop_layers, layer_scores

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", message=".*token_id.*")
V = 256
LAYER = re.compile(r"\.(?:layers|h)\.(\d+)\.")


def _config(family: str):
    t = transformers
    if family == "gpt2":
        return t.GPT2Config(vocab_size=V, n_embd=64, n_layer=4, n_head=4, n_positions=64,
                            bos_token_id=1, eos_token_id=2)  # fmt: skip
    return t.LlamaConfig(
        vocab_size=V, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def checkpoint(request, tmp_path_factory):
    """A seeded tiny model (4 layers; LLaMA with GQA) saved in many shards."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(request.param) / "src"
    model = transformers.AutoModelForCausalLM.from_config(_config(request.param))
    model.save_pretrained(path, max_shard_size="50KB")
    (path / "tokenizer.json").write_text('{"stand-in": true}')
    return request.param, path


def _data():
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(3, V, (2, 16), generator=g)} for _ in range(3)]


def _load(path):
    model, info = transformers.AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not any(info.values()), info
    return model.eval()


def _targets(family):
    return ("mlp",) if family == "gpt2" else ("heads", "mlp")  # GPT-2's config fixes head_dim


def _channels(plan):
    return [(a.args["anchor"], a.args["channels"]) for a in plan.actions
            if a.kind == "remove_channels"]  # fmt: skip


def _assert_same_tensors(got, ref):
    a, b = got.state_dict(), ref.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k


def _runs(model, x):
    with torch.no_grad():
        logits = model(**x).logits
    assert logits.shape == (*x["input_ids"].shape, V) and torch.isfinite(logits).all()
    out = model.generate(x["input_ids"], max_new_tokens=2, do_sample=False)
    assert out.shape[1] == x["input_ids"].shape[1] + 2


@pytest.mark.parametrize("budget", [None, 2000])
def test_streamed_activation_prune_equals_in_memory(checkpoint, tmp_path, budget):
    family, src = checkpoint
    data, targets = _data(), _targets(family)
    rep = nhf.prune_pretrained(src, tmp_path / "out", data=data, importance="activation",
                               amount=0.5, targets=targets, activation_budget=budget)  # fmt: skip
    ref = _load(src)
    mem = nhf.prune(ref, data[0], data=data, importance="activation", amount=0.5,
                    targets=targets)  # fmt: skip
    assert _channels(rep.plan) == _channels(mem.plan)  # the same heads and channels
    got = _load(tmp_path / "out")
    _assert_same_tensors(got, ref)
    _runs(got, data[0])
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    if family == "llama":  # whole KV groups: 2 of 4 query heads, 1 of 2 KV heads stay
        assert (cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (2, 1)
        assert cfg["intermediate_size"] == 64
    else:
        assert cfg["n_inner"] == 128
    assert rep.after.params == mem.after.params < rep.before.params == mem.before.params
    assert rep.details["removed"] == mem.details["removed"]
    assert (rep.details["pass"]["activations_spilled_bytes"] > 0) == (budget is not None)
    assert [r["layer"] for r in rep.details["pass"]["layers"]] == [0, 1, 2, 3]
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("criterion", ["influence", "angular"])
def test_layers_removed_from_the_same_pass_are_the_in_memory_choice(checkpoint, tmp_path,
                                                                    criterion):  # fmt: skip
    family, src = checkpoint
    data = _data()
    rep = nhf.prune_pretrained(src, tmp_path / "out", data=data, importance="activation",
                               amount=0.25, targets=("mlp",), remove_layers=0.5,
                               layer_criterion=criterion)  # fmt: skip
    dense = _load(src)
    want = layer_scores(dense, data, criterion)
    got_scores = {r["layer"]: r[criterion] for r in rep.details["pass"]["layers"]}
    assert got_scores == pytest.approx(want, rel=1e-6, abs=1e-9)
    chosen = cut_layers(_load(src), data, 2, criterion)  # the in-memory cut, same data
    assert rep.details["removed_layers"] == chosen
    ref = _load(src)
    nhf.prune(ref, data[0], data=data, importance="activation", amount=0.25, targets=("mlp",))
    drop_layers(ref, chosen)
    got = _load(tmp_path / "out")
    _assert_same_tensors(got, ref)
    _runs(got, data[0])
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["n_layer" if family == "gpt2" else "num_hidden_layers"] == 2
    assert len(cfg["netsculpt_layers"]) == 2
    assert rep.after.params == sum(p.numel() for p in got.parameters())
    # the report's plan replays in memory: the same model
    replayed = _load(src)
    ns.apply(replayed, data[0], rep.plan.to_dict(), data=data)
    _assert_same_tensors(replayed, got)


@pytest.mark.parametrize("amount", [0, 0.5])
def test_layers_from_the_pass_with_magnitude_widths_or_none(checkpoint, tmp_path, amount):
    family, src = checkpoint
    data, targets = _data(), _targets(family)
    rep = nhf.prune_pretrained(src, tmp_path / "out", data=data, amount=amount, targets=targets,
                               importance="l2", remove_layers=1, layer_criterion="angular")  # fmt: skip
    chosen = cut_layers(_load(src), data, 1, "angular")
    assert rep.details["removed_layers"] == chosen
    ref = _load(src)
    if amount:
        nhf.prune(ref, data[0], amount=amount, targets=targets, importance="l2")
    else:
        assert [a.kind for a in rep.plan.actions] == ["drop_layers"]
    drop_layers(ref, chosen)
    _assert_same_tensors(_load(tmp_path / "out"), ref)


def test_one_decoder_layer_holds_weights_at_a_time(checkpoint, tmp_path, monkeypatch):
    family, src = checkpoint
    seen = []
    load = streamed.load_layer

    def counted(layer, prefix, where):
        load(layer, prefix, where)
        real = {m.group(1) for n, p in seen_runner[0].named_parameters()
                if p.device.type != "meta" and (m := LAYER.search(n))}  # fmt: skip
        seen.append(len(real))

    seen_runner = []
    init = streamed.LayerPass.__init__

    def spy(self, runner, *a, **kw):
        seen_runner.append(runner)
        init(self, runner, *a, **kw)

    monkeypatch.setattr(streamed, "load_layer", counted)
    monkeypatch.setattr(streamed.LayerPass, "__init__", spy)
    nhf.prune_pretrained(src, tmp_path / "out", data=_data(), importance="activation",
                         amount=0.5, targets=_targets(family))  # fmt: skip
    assert seen == [1, 1, 1, 1]
    # after the pass nothing of the running model holds weights
    assert all(p.device.type == "meta" for p in seen_runner[0].parameters())


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"importance": "activation"}, "needs calibration data"),
        ({"remove_layers": 1}, "needs calibration data"),
        ({"data": True, "importance": "activation", "targets": ("heads", "mlp", "hidden")},
         "inside one decoder layer"),
        ({"data": True, "remove_layers": 1, "layer_criterion": "ppl"}, "layer_criterion"),
        ({"data": True, "remove_layers": 4}, "at least one must stay"),
        ({"data": True, "remove_layers": 1.5}, "a count >= 1 or a fraction"),
        ({"data": True, "remove_layers": 1, "importance": "taylor"}, "'activation'"),
        ({"data": True, "importance": "activation", "amount": 0}, "prunes nothing"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(checkpoint, tmp_path, kw, message):
    _, src = checkpoint
    if kw.get("data") is True:
        kw = {**kw, "data": _data()}
    with pytest.raises(InputError, match=message) as e:
        nhf.prune_pretrained(src, tmp_path / "out", **kw)
    assert len(str(e.value).splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_sharded_activation_with_layer_removal(checkpoint, tmp_path, capsys):
    family, src = checkpoint
    out, report = tmp_path / "out", tmp_path / "r.json"
    argv = ["prune", str(src), "--sharded", "--importance", "activation", "--amount", "0.5",
            "--targets", *_targets(family), "--data", "stdlib-text", "--max-batches", "2",
            "--remove-layers", "1", "--layer-criterion", "angular", "-o", str(out),
            "--report", str(report)]  # fmt: skip
    assert main(argv) == 0
    assert "saved to" in capsys.readouterr().out
    rep = json.loads(report.read_text())
    assert (
        rep["config"]["importance"] == "activation" and len(rep["details"]["removed_layers"]) == 1
    )
    got = _load(out)
    assert len(got.transformer.h if family == "gpt2" else got.model.layers) == 3
    _runs(got, _data()[0])
    argv = ["prune", str(src), "--sharded", "--layer-criterion", "angular", "--data",
            "stdlib-text", "-o", str(tmp_path / "o2")]  # fmt: skip
    assert main(argv) == 2
    assert "--layer-criterion goes with --remove-layers" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_a_failure_in_the_pass_leaves_nothing(checkpoint, tmp_path, monkeypatch):
    _, src = checkpoint
    load = streamed.load_layer

    def fails_at_layer_2(layer, prefix, where):
        if ".2." in prefix:
            raise RuntimeError("disk read failed")
        load(layer, prefix, where)

    monkeypatch.setattr(streamed, "load_layer", fails_at_layer_2)
    with pytest.raises(RuntimeError, match="disk read failed"):
        nhf.prune_pretrained(src, tmp_path / "out", data=_data(), importance="activation",
                             amount=0.5, remove_layers=1, targets=("mlp",))  # fmt: skip
    assert list(tmp_path.iterdir()) == []
