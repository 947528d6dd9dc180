"""One batch reader for every op: tensors, (x, y), mappings, Datasets, DataLoaders."""

from __future__ import annotations

from collections import UserDict

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from netsculpt.calibration import as_batches
from netsculpt.calibration.batches import first_tensor, iter_batches, logits_of, run
from netsculpt.errors import InputError


class Encoding(UserDict):
    """A Mapping that is not a dict, like a tokenizer's BatchEncoding."""


def test_forms_of_data_give_inputs_and_targets():
    x, y = torch.randn(10, 3), torch.arange(10)
    assert [t.shape for t, _ in iter_batches(x)] == [(10, 3)]  # one tensor is one batch
    got = list(iter_batches(TensorDataset(x, y), batch_size=4))
    assert [len(t) for t, _ in got] == [4, 4, 2] and torch.equal(got[0][1], y[:4])
    assert len(list(iter_batches(DataLoader(TensorDataset(x, y), batch_size=5), 1))) == 1
    enc = Encoding(input_ids=torch.zeros(2, 4, dtype=torch.long), labels=torch.ones(2, 4))
    (inputs, target), = iter_batches([enc])  # fmt: skip
    assert set(inputs) == {"input_ids"} and target.shape == (2, 4)


def test_as_batches_and_run_accept_a_non_dict_mapping():
    model = torch.nn.Linear(4, 2)

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, features):
            return self.inner(features)

    b = as_batches([Encoding(features=torch.randn(3, 4))])
    assert run(Wrapped(), b[0].inputs).shape == (3, 2)


def test_outputs_and_errors():
    t = torch.zeros(1)
    assert first_tensor({"logits": t, "other": torch.ones(1)}) is t
    assert first_tensor((None, t)) is t
    with pytest.raises(InputError, match="cannot find logits"):
        logits_of({"loss": None})
    with pytest.raises(InputError, match="calibration data"):
        list(iter_batches(None))
    with pytest.raises(InputError, match="sequence of 3"):
        list(iter_batches([(t, t, t)]))
