"""Session: the state of one verb call, and the only caller of capture and of the data reader.

An op never exports the model or reads data itself: it asks its session, which exports once
and again only after an edit changed the model (:meth:`Session.apply` marks the capture stale),
and reads the calibration data once with one batch rule (``max_batches``, ``batch_size``).
The session applies plans through its backend, takes the before / after snapshots, restores
the model when anything fails, and builds the Report. Each of these steps (and an op's scoring,
through :meth:`Session.step`) reports through :mod:`netsculpt.core.progress`.

>>> import torch
>>> from torch import nn
>>> s = Session(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.ones(1, 4))
>>> [g.size for g in s.graph.prunable_groups()], s.exports
([8], 1)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from netsculpt.calibration.batches import Batch, check_batch, read_batches
from netsculpt.core import progress
from netsculpt.core.errors import InputError
from netsculpt.core.plan import Plan
from netsculpt.core.select import ignored_names
from netsculpt.graph.capture import Captured, capture
from netsculpt.graph.channels import StructureGraph, build_graph
from netsculpt.report import Report, Snapshot, layer_sizes

DEFAULT_BATCH_SIZE = 64


class Session:
    """One verb call on one model: capture, data, snapshots, apply, verify, restore, report.

    ``backend``: what applies plans (default: the memory backend, on ``model`` itself);
    ``scorer``: ``fn(name, groups) -> {group id: scores}``, used by ops for a named importance
    instead of the in-memory estimators (when the weights live elsewhere: the shard backend).
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        *,
        data: Any = None,
        ignore: Any = (),
        max_batches: int | None = 8,
        batch_size: int | None = None,
        seed: int = 0,
        backend: Any = None,
        scorer: Callable[[str, list], dict] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"expected a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.example_inputs = example_inputs
        self.data = data
        self.ignore = ignored_names(model, ignore)
        self.max_batches = max_batches
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self.seed = seed
        if backend is None:
            from netsculpt.engine.backends.memory import MemoryBackend

            backend = MemoryBackend()
        self.backend = backend
        # scores by estimator name, ``scorer(name, groups) -> {group id: scores}``, for a
        # session whose weights are not in the model (the shard backend streams them)
        self.scorer = scorer
        self.notes: list[str] = []
        self.exports = 0
        self._cap: Captured | None = None
        self._graph: StructureGraph | None = None
        self._blocks: list | None = None
        self._batches: list[Batch] | None = None
        self.layers_before = layer_sizes(model)

    # -- what ops read -------------------------------------------------------------------------
    @property
    def captured(self) -> Captured:
        """The exported program of the model as it is now (exported at most once per edit)."""
        if self._cap is None:
            with self.step("capture (torch.export)"):
                self._cap = capture(self.model, self.example_inputs)
            self.exports += 1
        return self._cap

    @property
    def graph(self) -> StructureGraph:
        """The channel groups of the model as it is now (built from :attr:`captured`)."""
        if self._graph is None:
            cap = self.captured
            with self.step("channel groups"):
                self._graph = build_graph(
                    self.model, self.example_inputs, ignore=self.ignore, cap=cap
                )
        return self._graph

    def blocks(self) -> list:
        """The depth view (:func:`netsculpt.graph.blocks.find_blocks`) of the model as it is now."""
        if self._blocks is None:
            from netsculpt.graph.blocks import find_blocks

            cap = self.captured
            with self.step("blocks"):
                self._blocks = find_blocks(self.model, self.example_inputs, cap)
        return self._blocks

    @property
    def has_data(self) -> bool:
        return self.data is not None

    def batches(self, required: str | None = None) -> list[Batch]:
        """The calibration batches, read once (at most ``max_batches`` of ``batch_size``).

        ``required``: the option that needs data, for the error when there is none.
        """
        if self._batches is None:
            if self.data is None:
                if required:
                    raise InputError(f"{required} needs calibration data (data=, --data)")
                return [Batch(self.example_inputs)]
            with (
                self.step("read calibration data"),
                torch.random.fork_rng(devices=[]),  # a shuffling loader draws the same batches
            ):
                _seed_everything(self.seed)
                batches = read_batches(self.data, self.max_batches, self.batch_size)
            check_batch(batches[0].inputs, self.example_inputs, 0)
            self._batches = batches
        return self._batches

    def data_batches(self, required: str | None = None) -> list[tuple[Any, Any]] | None:
        """The same batches as ``(inputs, target)`` pairs; None without data."""
        if self.data is None and required is None:
            return None
        return [(b.inputs, b.target) for b in self.batches(required)]

    def stale(self) -> None:
        """The model changed: the next read re-exports it."""
        self._cap = self._graph = self._blocks = None

    @staticmethod
    def step(label: str) -> Any:
        """A context for one step of work (an op's scoring): a spinner on a terminal, one line
        in a log when it took longer than about 2 s, nothing with ``-q``
        (:func:`netsculpt.core.progress.step`)."""
        return progress.step(label)

    @staticmethod
    def track(items: Any, label: str) -> Any:
        """``items`` with a progress bar (in a log: a line per 10 % and one at the end, for
        work longer than about 2 s) (:func:`netsculpt.core.progress.track`)."""
        return progress.track(items, label)

    # -- measuring -----------------------------------------------------------------------------
    def snapshot(self, predicted: dict | None = None, graph: Any = None) -> Snapshot:
        """Params and MACs of the model now; with ``predicted`` (a ``{group: channels}`` map on
        ``graph``, by default the current one) the sizes after that removal, without a new
        export."""
        if predicted is not None:
            g = graph if graph is not None else self.graph
            params, macs = g.predict_params(self.model, predicted), g.predict_macs(predicted)
            return Snapshot(params=params, macs=macs)
        from netsculpt.measure.macs import macs_from_program
        from netsculpt.measure.params import count_params

        return Snapshot(
            params=count_params(self.model), macs=macs_from_program(self.captured.program)
        )

    # -- editing -------------------------------------------------------------------------------
    def apply(self, plan: Plan, **options: Any) -> Plan:
        """Apply ``plan`` through the backend; returns what was really applied (actions a
        check refused are left out, with a note). The capture is stale afterwards."""
        n = len(plan.actions)
        with self.step(f"{plan.op}: surgery and verify ({n} action{'s' * (n != 1)})"):
            done = self.backend.apply(self, plan, **options)
        self.stale()
        return done

    @contextmanager
    def trial(self, plan: Plan, **options: Any) -> Iterator[Plan]:
        """Apply ``plan`` for the body of the block only (yields what was applied): then the
        model's structure and tensors are put back and the capture of before is kept, so that
        trying a candidate edit costs no export. Writes into tensors the plan did not replace
        (a training step) are not undone."""
        undo, notes = self.checkpoint(), len(self.notes)
        try:
            yield self.apply(plan, **options)
        finally:
            undo()
            del self.notes[notes:]

    def checkpoint(self) -> Callable[[], None]:
        """A function that puts the model's structure and replaced tensors back as they are
        now, with the capture of now (no export after it)."""
        undo = self.backend.checkpoint(self)
        cached = (self._cap, self._graph, self._blocks)

        def back() -> None:
            undo()
            self._cap, self._graph, self._blocks = cached

        return back

    def guarded(self, body: Callable[[], Any]) -> Any:
        """Run ``body``; on any exception restore the model to its state before, then re-raise."""
        undo = self.backend.checkpoint(self)
        try:
            return body()
        except BaseException:
            undo()
            self.stale()
            raise

    # -- reporting -----------------------------------------------------------------------------
    def report(
        self,
        op: str,
        config: dict,
        plan: Plan,
        before: Snapshot,
        after: Snapshot,
        details: dict | None = None,
    ) -> Report:
        rep = Report(
            op=op,
            config=config,
            before=before,
            after=after,
            details=details or {},
            notes=self.notes,
            layers_before=self.layers_before,
            layers_after=layer_sizes(self.model),
            plan=plan,
        )
        rep.details.setdefault("exports", self.exports)
        return rep


def _seed_everything(seed: int) -> None:
    """The data reader's random choices (a shuffling loader's order) follow ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
