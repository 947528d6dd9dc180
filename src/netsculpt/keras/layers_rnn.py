"""Converters for LSTM, GRU and SimpleRNN (``(batch, time, features)`` inputs).

The mirror holds an ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` with ``batch_first=True`` and a
:class:`Take` after it (the output sequence, or its last step when ``return_sequences=False``),
so the engine's recurrent rules prune whole hidden units (every gate's rows, the recurrence's
columns, the next layer's inputs). The weights map one to one, with two differences:

- Keras has one bias per gate row (``bias``), torch two (``bias_ih``, ``bias_hh``): the mirror
  gets ``bias_ih = bias``, ``bias_hh = 0``, and the rebuild writes back their sum. A GRU with
  ``reset_after=True`` (Keras 3's default) has both biases (``bias[0]``, ``bias[1]``), as torch;
- Keras orders a GRU's gates (update z, reset r, candidate h), torch (r, z, n): the first two
  blocks of rows are swapped each way. The LSTM gate order (i, f, c, o) is torch's.

Refused: ``return_state``, ``go_backwards``, ``stateful``, masks and initial states, other
activations than torch's (``tanh`` with ``sigmoid`` gates; ``tanh`` / ``relu`` for SimpleRNN),
and a GRU with ``reset_after=False`` (torch has no such GRU).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from netsculpt.errors import InputError
from netsculpt.keras._base import activation_name, converter, numpy, refuse, tensor, weights_of


class Take:
    """The output of a torch recurrent module: the whole sequence, or its last time step."""

    def __init__(self, sequences: bool, layer: str = "") -> None:
        self.sequences, self.layer = sequences, layer

    def __call__(self, y) -> torch.Tensor:
        if isinstance(y, torch.Tensor):  # an op replaced the recurrent module (cut)
            if not self.sequences:  # a bridge of (batch, time, f) cannot stand for the last step
                raise InputError(
                    f"Keras layer '{self.layer}' returns only its last step: cut cannot remove "
                    f"or bridge it; pass ignore=['{self.layer}'] to keep it"
                )
            return y
        out = y[0]
        return out if self.sequences else out[:, -1]


def _swap_zr(a: np.ndarray, units: int, axis: int) -> np.ndarray:
    """A GRU's gate blocks between Keras's order (z, r, h) and torch's (r, z, n)."""
    z, r, h = np.split(a, [units, 2 * units], axis=axis)
    return np.concatenate([r, z, h], axis=axis)


class _Recurrent:
    torch_cls: type = nn.LSTM
    swap = False  # the GRU's gate order

    def check(self, layer) -> None:
        if activation_name(layer.activation) != "tanh":
            raise refuse(layer, f"activation {activation_name(layer.activation)!r} (only tanh)")
        if activation_name(layer.recurrent_activation) != "sigmoid":
            raise refuse(layer, "recurrent_activation other than sigmoid")

    def torch_kwargs(self, layer) -> dict:
        return {}

    def build(self, b, layer, ins, shape):
        cfg = layer.get_config()
        for key in ("return_state", "go_backwards", "stateful"):
            if cfg.get(key):
                raise refuse(layer, f"{key}=True")
        kwargs = dict(getattr(b, "call_kwargs", {}) or {})
        if any(kwargs.get(k) is not None for k in ("mask", "initial_state")):
            raise refuse(layer, "called with a mask or an initial state (not mirrored)")
        self.check(layer)
        x = b.layout(ins[0], False)
        if x.rank != 3:
            raise refuse(layer, f"input of rank {x.rank} (expects (batch, time, features))")
        w = weights_of(layer)
        units, bias = int(layer.units), bool(cfg["use_bias"])

        def make():
            mod = self.torch_cls(x.channels, units, batch_first=True, bias=bias,
                                 **self.torch_kwargs(layer))  # fmt: skip
            ih, hh = w["kernel"].T, w["recurrent_kernel"].T
            if self.swap:
                ih, hh = _swap_zr(ih, units, 0), _swap_zr(hh, units, 0)
            mod.weight_ih_l0, mod.weight_hh_l0 = tensor(ih), tensor(hh)
            if bias:
                b_ih, b_hh = self.split_bias(w["bias"], units)
                mod.bias_ih_l0, mod.bias_hh_l0 = tensor(b_ih), tensor(b_hh)
            mod._init_flat_weights()
            return mod

        path = b.module(layer, "main", make)
        items = [("mod", path), ("fn", Take(bool(cfg["return_sequences"]), layer.name))]
        return b.step(layer, [x], items, shape, False)

    def split_bias(self, bias: np.ndarray, units: int) -> tuple[np.ndarray, np.ndarray]:
        return bias, np.zeros_like(bias)

    def join_bias(self, b_ih: np.ndarray, b_hh: np.ndarray, units: int) -> np.ndarray:
        return b_ih + b_hh

    def rebuild(self, r, layer, ins, perms):
        mod = r.mod(layer)
        if not r.same_type(layer):  # cut: dropped, or bridged by a Dense
            return r.translate(mod, ins[0], layer.name)
        units = int(mod.weight_hh_l0.shape[1])
        cfg = {**layer.get_config(), "units": units}

        def weights():
            ih, hh = numpy(mod.weight_ih_l0), numpy(mod.weight_hh_l0)
            if self.swap:
                ih, hh = _swap_zr(ih, units, 0), _swap_zr(hh, units, 0)
            out = {"kernel": ih.T, "recurrent_kernel": hh.T}
            if mod.bias:
                b_ih, b_hh = numpy(mod.bias_ih_l0), numpy(mod.bias_hh_l0)
                out["bias"] = self.join_bias(b_ih, b_hh, units)
            # the weights live in the layer's cell: "<cell>/kernel" once it is in a model
            return {**out, **{f"{new.cell.name}/{k}": v for k, v in out.items()}}

        new = r.layer(layer, cfg, weights)
        return r.call(new, ins, False)


@converter("LSTM")
class LSTM(_Recurrent):
    torch_cls = nn.LSTM


@converter("GRU")
class GRU(_Recurrent):
    torch_cls = nn.GRU
    swap = True

    def check(self, layer) -> None:
        super().check(layer)
        if not layer.get_config().get("reset_after", True):
            raise refuse(layer, "reset_after=False (torch's GRU applies the reset gate after)")

    def split_bias(self, bias, units):  # reset_after=True: (2, 3 * units), input and recurrent
        return _swap_zr(bias[0], units, 0), _swap_zr(bias[1], units, 0)

    def join_bias(self, b_ih, b_hh, units):
        return np.stack([_swap_zr(b_ih, units, 0), _swap_zr(b_hh, units, 0)])


@converter("SimpleRNN")
class SimpleRNN(_Recurrent):
    torch_cls = nn.RNN

    def check(self, layer) -> None:
        name = activation_name(layer.activation)
        if name not in ("tanh", "relu"):
            raise refuse(layer, f"activation {name!r} (only tanh or relu)")

    def torch_kwargs(self, layer) -> dict:
        return {"nonlinearity": activation_name(layer.activation)}
