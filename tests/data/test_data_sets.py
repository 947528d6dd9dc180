"""Built-in data sets: shapes, ranges, deterministic splits, local generation only."""

import numpy as np
import pytest
import torch

from netsculpt.data import decode, encode, load_dataset, make_loader, text_corpus
from netsculpt.errors import InputError


def test_digits_shapes_range_and_splits():
    train, val, test = (load_dataset("digits", s) for s in ("train", "val", "test"))
    x, y = train.tensors
    assert x.shape[1:] == (64,) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert len(train) + len(val) + len(test) == 1797 and len(train) == int(0.7 * 1797)
    assert load_dataset("digits-image", "test").tensors[0].shape[1:] == (1, 8, 8)


def test_splits_are_deterministic_and_disjoint():
    a = load_dataset("digits", "val", seed=3).tensors[0]
    b = load_dataset("digits", "val", seed=3).tensors[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, load_dataset("digits", "val", seed=4).tensors[0])
    train = {tuple(r.tolist()) for r in load_dataset("digits", "train").tensors[0]}
    test = [tuple(r.tolist()) for r in load_dataset("digits", "test").tensors[0]]
    # digits has a few duplicate images; the index split itself is disjoint
    assert sum(r in train for r in test) < 10


def test_mnist1d_shapes_and_determinism():
    x, y = load_dataset("mnist1d", "train").tensors
    assert x.shape == (3500, 40) and x.dtype == torch.float32
    assert set(y.unique().tolist()) == set(range(10))
    assert torch.equal(load_dataset("mnist1d", "train").tensors[0], x)


def test_mnist1d_generation_is_local_cached_and_keeps_global_rng(tmp_path, monkeypatch):
    import mnist1d.data

    small = mnist1d.data.get_dataset_args()
    small.num_samples = 200  # a different cache key, and fast to generate
    monkeypatch.setenv("NETSCULPT_CACHE", str(tmp_path))
    monkeypatch.setattr(mnist1d.data, "get_dataset_args", lambda: small)
    monkeypatch.setattr(mnist1d.data, "get_dataset", pytest.fail)  # the downloader
    state = np.random.get_state()[1].copy()
    x = load_dataset("mnist1d", "test").tensors[0]
    assert x.shape == (30, 40)
    assert np.array_equal(np.random.get_state()[1], state)
    assert [p.name.startswith("mnist1d_42_") for p in tmp_path.iterdir()] == [True]
    monkeypatch.setattr(mnist1d.data, "make_dataset", pytest.fail)  # second call: cache only
    assert torch.equal(load_dataset("mnist1d", "test").tensors[0], x)


def test_mnist1d_samples_other_size_and_seed_are_their_own_draw(tmp_path, monkeypatch):
    from netsculpt.data.datasets import mnist1d_samples

    monkeypatch.setenv("NETSCULPT_CACHE", str(tmp_path))
    x, y = mnist1d_samples(60, seed=43)
    assert x.shape == (60, 40) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [6] * 10  # the generator balances the classes
    other = mnist1d_samples(60, seed=44)[0]
    assert not np.array_equal(x, other)
    assert sorted(p.name.split("_")[1] for p in tmp_path.iterdir()) == ["43", "44"]
    assert np.array_equal(mnist1d_samples(60, seed=43)[0], x)  # from the cache


def test_loader_order_depends_on_seed_only():
    ds = load_dataset("digits", "train")
    first = [next(iter(make_loader(ds, 16, shuffle=True, seed=1)))[1] for _ in range(2)]
    assert torch.equal(first[0], first[1])


def test_text_corpus_and_byte_tokenizer():
    text = text_corpus()
    assert len(text) > 100_000 and text == text_corpus()
    tokens = encode(text[:1000])
    assert tokens.dtype == torch.long and int(tokens.max()) < 256
    assert decode(tokens) == text[:1000]
    x, y = load_dataset("stdlib-text", "train").tensors
    assert x.shape[1] == 64 and torch.equal(x[:, 1:], y[:, :-1])


def test_unknown_dataset_suggests_names():
    with pytest.raises(InputError, match="did you mean digits"):
        load_dataset("digit")
    with pytest.raises(InputError, match="split"):
        load_dataset("digits", "dev")
