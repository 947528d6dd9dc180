"""The contract's clauses for the Hugging Face entry points: ``netsculpt.hf.prune`` in memory,
``prune_pretrained`` and ``cut_pretrained`` shard by shard. Each row: the result runs with the
same output shape; the report's params match a fresh count of what was written; a fixed seed
gives the same tensors; refused input leaves the model / the source folder unchanged and
writes no output; the result round-trips (``ns.save`` → ``ns.load``, or ``from_pretrained``).
"""

from __future__ import annotations

import hashlib
import warnings

import pytest
import torch

import netsculpt as ns
import netsculpt.hf as nhf
from netsculpt.errors import InputError
from netsculpt.measure import count_params

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", message=".*token_id.*")

CONFIG = dict(
    vocab_size=128, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
    bos_token_id=1, eos_token_id=2, pad_token_id=0,
)  # fmt: skip
IDS = {"input_ids": torch.randint(3, 128, (2, 8), generator=torch.Generator().manual_seed(1))}


def _llama():
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**CONFIG)).eval()


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _digest(folder) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**IDS).logits


@pytest.fixture
def checkpoint(tmp_path):
    torch.set_num_threads(1)
    _llama().save_pretrained(tmp_path / "src", max_shard_size="60KB")
    assert len(list((tmp_path / "src").glob("*.safetensors"))) > 1
    return tmp_path / "src"


def test_hf_prune_in_memory_contract(tmp_path):
    model = _llama()
    ref = _logits(model)
    state = _state(model)
    for bad in ({"amount": 1.5}, {"no_such_option": 1}, {"targets": ("nope",)}):
        with pytest.raises(InputError):
            nhf.prune(model, IDS, **bad)
        assert _same(state, _state(model)), f"refused {bad} changed the model"

    rep = nhf.prune(model, IDS, amount=0.5, targets=("heads", "mlp"))
    out = _logits(model)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert rep.after.params == count_params(model) < rep.before.params
    again = _llama()
    nhf.prune(again, IDS, amount=0.5, targets=("heads", "mlp"))
    assert _same(_state(again), _state(model)), "the same call gives the same model"

    # uniform: the config describes every layer, so from_pretrained rebuilds it as it is
    nhf.save_pretrained(model, tmp_path / "hf")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert torch.allclose(_logits(back), out, atol=1e-5)
    ns.save(model, tmp_path / "ns")
    reloaded = ns.load(tmp_path / "ns", model=_llama()).eval()
    assert torch.allclose(_logits(reloaded), out, atol=1e-6)


def test_shard_prune_contract(checkpoint, tmp_path):
    src_before = _digest(checkpoint)
    for i, bad in enumerate(({"amount": 1.5}, {"importance": "taylor"}, {"targets": ("x",)})):
        dst = tmp_path / f"bad{i}"
        with pytest.raises(InputError):
            nhf.prune_pretrained(checkpoint, dst, **bad)
        assert not dst.exists(), f"refused {bad} wrote {dst}"
        assert not list(tmp_path.glob(f".bad{i}*")), "no partial folder is left behind"
    assert _digest(checkpoint) == src_before

    rep = nhf.prune_pretrained(checkpoint, tmp_path / "a", amount=0.5)
    nhf.prune_pretrained(checkpoint, tmp_path / "b", amount=0.5)
    assert _digest(checkpoint) == src_before, "the source is read, never written"
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b"), "the same call writes the same"

    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "a").eval()
    assert rep.after.params == count_params(back) < rep.before.params
    assert _logits(back).shape == _logits(_llama()).shape
    # the saved plan replays in memory on the original weights and gives the written model
    model = _llama()
    ns.apply(model, IDS, ns.Plan.from_json(rep.plan.to_json()))
    assert torch.allclose(_logits(model), _logits(back), atol=1e-5)


def test_shard_cut_contract(checkpoint, tmp_path):
    src_before = _digest(checkpoint)
    for i, bad in enumerate(([5], [0, 1, 2], [-9])):
        dst = tmp_path / f"bad{i}"
        with pytest.raises(InputError):
            nhf.cut_pretrained(checkpoint, dst, bad)
        assert not dst.exists()
    with pytest.raises(InputError):
        nhf.cut_pretrained(checkpoint, checkpoint, [1])
    assert _digest(checkpoint) == src_before

    rep = nhf.cut_pretrained(checkpoint, tmp_path / "a", [1])
    nhf.cut_pretrained(checkpoint, tmp_path / "b", [1])
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "a").eval()
    assert back.config.num_hidden_layers == 2
    assert rep.after.params == count_params(back) < rep.before.params
    model = _llama()
    ns.apply(model, IDS, ns.Plan.from_json(rep.plan.to_json()))
    assert torch.allclose(_logits(model), _logits(back), atol=1e-5)
