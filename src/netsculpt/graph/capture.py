"""Capture a model as an ATen graph with ``torch.export`` (non-strict), remembering which module
and which parameter every node belongs to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from netsculpt.core.errors import CaptureError, InputError
from netsculpt.core.utils import eval_mode, masks_suspended, normalize_inputs


def run_model(model: nn.Module, example_inputs: Any) -> Any:
    args, kwargs = normalize_inputs(example_inputs, model)
    with torch.no_grad(), eval_mode(model):
        return model(*args, **kwargs)


@dataclass
class Captured:
    """An exported program plus the lookups every reader of the graph needs."""

    program: Any  # torch.export.ExportedProgram
    args: tuple
    kwargs: dict
    # placeholder node name -> parameter / buffer / constant fully qualified name
    tensor_of_input: dict[str, str] = field(default_factory=dict)
    # placeholder node name -> "param" | "buffer" | "constant" | "user_input"
    input_kind: dict[str, str] = field(default_factory=dict)

    @property
    def graph(self) -> torch.fx.Graph:
        return self.program.graph_module.graph

    @staticmethod
    def module_path(node: torch.fx.Node) -> str:
        """Fully qualified path of the innermost module a node was called from ('' = root)."""
        stack = node.meta.get("nn_module_stack") or {}
        if not stack:
            return ""
        path = list(stack.values())[-1][0]
        return _clean_path(path)

    @staticmethod
    def module_type(node: torch.fx.Node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        if not stack:
            return ""
        t = list(stack.values())[-1][1]
        return t if isinstance(t, str) else getattr(t, "__qualname__", str(t))


def _clean_path(path: str) -> str:
    # torch.export writes paths like "L['self'].layer1[0].conv1" in some versions.
    if path.startswith("L['self']"):
        path = path[len("L['self']") :].lstrip(".")
        path = path.replace("[", ".").replace("]", "").replace("'", "")
    return path


def capture(model: nn.Module, example_inputs: Any) -> Captured:
    """Export ``model`` on ``example_inputs`` (eval mode, non-strict) into a :class:`Captured`.

    Works on the meta device too (shapes only).

    >>> cap = capture(nn.Sequential(nn.Linear(4, 3)), torch.randn(2, 4))
    >>> sorted(cap.tensor_of_input.values())
    ['0.bias', '0.weight']
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
    args, kwargs = normalize_inputs(example_inputs, model)
    try:
        with eval_mode(model), torch.no_grad(), masks_suspended():
            program = torch.export.export(model, args, kwargs, strict=False)
    except InputError:
        raise
    except Exception as e:  # torch raises many types; report one line with the cause
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CaptureError(
            f"torch.export could not capture {type(model).__name__} on the example inputs "
            f"({type(e).__name__}: {msg[:300]}); check the example input shapes, or pass "
            f"ignore=[...] for the offending submodule"
        ) from e
    sig = program.graph_signature
    cap = Captured(program=program, args=args, kwargs=kwargs)
    kinds = (
        ("param", sig.inputs_to_parameters),
        ("buffer", sig.inputs_to_buffers),
        ("constant", getattr(sig, "inputs_to_lifted_tensor_constants", {}) or {}),
    )
    for kind, mapping in kinds:
        for node_name, fqn in mapping.items():
            cap.tensor_of_input[node_name] = fqn
            cap.input_kind[node_name] = kind
    for spec in sig.input_specs:
        name = spec.arg.name if hasattr(spec.arg, "name") else None
        if name and name not in cap.input_kind:
            cap.input_kind[name] = "user_input"
    return cap
