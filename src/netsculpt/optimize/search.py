"""The NetAdapt-style search of ``optimize`` (docs/optimize.md).

Per step: propose (:mod:`netsculpt.optimize.candidates`), try each proposal on the model
(``session.trial``: applied, scored, put back; no export), keep the one with the least proxy
damage per unit of predicted saving, apply it, re-estimate BatchNorm statistics, heal every
``heal_every`` steps, measure (params / MACs counted, latency timed, the metric on held-out
batches) and stop at the target, at ``max_drop``, at ``time_budget`` or when nothing is left.
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import time
from typing import Any

import torch

from netsculpt.calibration.batches import Batch
from netsculpt.calibration.bn import batchnorms, recalibrate_bn
from netsculpt.core.errors import InputError, NetsculptError
from netsculpt.core.plan import Action, Plan
from netsculpt.optimize import quality as Q
from netsculpt.optimize.budget import Budget, resolve
from netsculpt.optimize.candidates import (
    Candidate,
    Costs,
    auto_granularity,
    block_candidates,
    can_remove_blocks,
    width_candidates,
)
from netsculpt.optimize.latency import LatencyTable, batched, clock, find_layers

RETRIES = 2  # proposals tried after the best one exceeds max_drop, before the search stops
CONFIRM = 3  # timings whose median a latency decision reads (the start, the end, a stop)
NOISE_KL = 1e-5  # nats: proxy changes this small do not tell proposals apart


class WithoutHeldOut:
    """``data`` without the batches read as held-out (positions ``lo`` to ``hi`` in its order),
    re-iterable: what the heals train on, so that ``max_drop`` is read on data they never saw
    (for a loader that does not shuffle)."""

    def __init__(self, data: Any, lo: int, hi: int, batch_size: int) -> None:
        self.data, self.lo, self.hi, self.batch_size = data, lo, hi, batch_size

    def __iter__(self) -> Any:
        from netsculpt.calibration.batches import loader

        for i, b in enumerate(loader(self.data, self.batch_size)):
            if not self.lo <= i < self.hi:
                yield b


class Search:
    def __init__(self, session: Any, cfg: Any) -> None:
        self.s, self.cfg = session, cfg
        self.t0 = time.perf_counter()
        self.actions: list[Action] = []
        self.trace: list[dict[str, Any]] = []
        self.stop = ""
        self.tried = 0
        self.table: LatencyTable | None = None
        self.rejected: tuple[str, float] | None = None
        self.gap = math.inf

    # -- set-up ------------------------------------------------------------------------------
    def _data(self) -> None:
        s, cfg = self.s, self.cfg
        if s.has_data:
            s.max_batches = cfg.max_batches + cfg.eval_batches
            self.calib, self.held, note = Q.split(s.batches(), cfg.max_batches)
            if note:
                s.notes.append(note)
        else:
            self.calib = self.held = [Batch(s.example_inputs)]
            s.notes.append("no data: the proxy and max_drop read the example inputs (pass data=)")
        self.kind = Q.metric_kind(cfg.metric, self.held)
        why = Q.needs_labels(self.kind, self.held)
        if why:
            raise InputError(f"optimize: {why}")

    def _fold(self) -> None:
        """The exact BatchNorm folds, once, through the merge op's planner and the session."""
        from netsculpt.engine import registry

        merge = registry.get("merge").module
        folds = merge.FoldConfig(bn=True, bn_before=True, affine=False, norm_gain=False)
        undo = self.s.backend.checkpoint(self.s)
        try:
            rep = merge.run(self.s, merge.MergeConfig(folds=folds))
        except NetsculptError as e:
            undo()
            self.s.stale()
            self.s.notes.append(f"BatchNorm folds skipped: {e}")
            return
        for a in rep.plan.actions:
            a.args["step"] = 0
        self.actions.extend(rep.plan.actions)

    def _latency_setup(self) -> None:
        cfg = self.cfg
        self.lat_inputs = batched(self.s.example_inputs, cfg.latency_batch)
        self.timer = cfg.timer or clock(cfg.threads, cfg.latency_rounds)

    def _build_table(self) -> None:
        cfg, graph = self.cfg, self.s.graph
        layers = self.layers()

        def prunable(layer: Any, dim: int) -> bool:
            lays = graph.tensor_layouts.get(layer.path + ".weight")
            if lays is None or dim >= len(lays):
                return False
            groups = (graph.group_of_class(c) for c in graph.atoms.leaves(lays[dim]))
            return any(g is not None and g.prunable for g in groups)

        whole = self.latency(CONFIRM)
        self.table = LatencyTable.build(
            self.s.model, layers, self.timer, prunable=prunable, whole_ms=whole,
            granularity=lambda n: auto_granularity(n, fixed=cfg.granularity),
            points=cfg.latency_points,
        )  # fmt: skip

    # -- readings ----------------------------------------------------------------------------
    def layers(self) -> list:
        """The timed layers of the model now, their shapes at the latency batch size."""
        batch = self.cfg.latency_batch
        return find_layers(self.s.model, self.s.example_inputs if batch else self.lat_inputs, batch)

    def out_of_time(self) -> bool:
        b = self.cfg.time_budget
        return b is not None and time.perf_counter() - self.t0 > b

    def measure(self, step: int, label: str, healed: bool = False) -> dict[str, Any]:
        """Counted params / MACs (one export), timed latency with the table's prediction, the
        proxy on the calibration batches and the metric on the held-out ones."""
        s = self.s
        snap = s.snapshot()
        row: dict[str, Any] = {"step": step, "edit": label, "params": snap.params,
                               "macs": snap.macs}  # fmt: skip
        if self.table is not None:
            layers = self.layers()
            row["latency_ms"] = self.latency()
            row["table_ms"] = self.table.predict(layers, {ly.path: ly.dims for ly in layers})
            row["table_error"] = row["table_ms"] / row["latency_ms"] - 1.0
        row["proxy_kl"] = Q.proxy(s.model, self.calib, self.ref_calib)
        row[self.kind] = Q.held_out(s.model, self.held, self.ref_held, self.kind)
        row["drop"] = Q.drop(self.kind, self.base_metric, row[self.kind])
        row["healed"] = healed
        row["seconds"] = round(time.perf_counter() - self.t0, 3)
        return row

    def latency(self, n: int = 1) -> float:
        """The measured latency of the model now: the median of ``n`` timings."""
        return statistics.median(self.timer(self.s.model, self.lat_inputs) for _ in range(n))

    def met(self, row: dict[str, Any]) -> bool:
        """Every budget met; a latency that looks met is timed twice more first (the median of
        the three decides: one lucky timing on a busy machine does not end the search)."""
        if any(not b.met(self.value(row, b.metric)) for b in self.budgets):
            return False
        if "latency_ms" in row and any(b.metric == "latency" for b in self.budgets):
            row["latency_ms"] = statistics.median(
                [row["latency_ms"], *(self.latency() for _ in range(CONFIRM - 1))]
            )
            row["table_error"] = row["table_ms"] / row["latency_ms"] - 1.0
            return all(b.met(self.value(row, b.metric)) for b in self.budgets)
        return True

    def value(self, row: dict[str, Any], metric: str) -> float:
        return float(row["latency_ms" if metric == "latency" else metric])

    # -- one step ----------------------------------------------------------------------------
    def scores(self, graph: Any) -> dict:
        from netsculpt.importance import score_groups

        groups = graph.prunable_groups()
        imp = self.cfg.importance or ("activation" if self.s.has_data else "l2")
        if callable(imp):
            return {g.id: torch.as_tensor(imp(self.s.model, g)).double().numpy() for g in groups}
        pairs = Q.as_pairs(self.calib) if self.s.has_data else None
        return score_groups(imp, self.s.model, graph, groups, data=pairs, seed=self.cfg.seed)

    def proposals(self, driving: Budget, row: dict[str, Any]) -> list[Candidate]:
        s, cfg = self.s, self.cfg
        graph = s.graph
        layers = self.layers() if self.table is not None else None
        costs = Costs(driving.metric, graph, s.model, layers, self.table)
        now = self.value(row, driving.metric)
        gap = max(now - driving.limit, 1e-12 * driving.base)
        goal = min(cfg.step * driving.base, gap)
        if driving.metric == "latency":  # the table's units: rescale the measured gap
            goal, gap = goal * costs.now / max(now, 1e-12), gap * costs.now / max(now, 1e-12)
        self.gap = gap  # savings beyond the target count for nothing when proposals are ranked

        def describe(g: Any, kept: int) -> str:
            mods = [m.module for m in g.members if m.role == "out"] or g.modules
            return f"{g.kind}s of {mods[0]}{' +' if len(set(mods)) > 1 else ''}: {g.size}→{kept}"

        out = width_candidates(graph, self.scores(graph), costs, goal, cfg.granularity, describe)
        if cfg.cut and self.blocks_ok:
            out += block_candidates(s.blocks(), costs, s.ignore)
        return out

    def try_all(self, cands: list[Candidate], proxy_now: float) -> list[Candidate]:
        """Each candidate tried on the model and put back; ranked by damage per unit saved."""
        ranked = []
        for i, c in enumerate(cands):
            if self.out_of_time():
                self.stop = "time"
                return []
            try:
                with self.s.trial(c.plan(-1), safe=False):
                    c.proxy = Q.proxy(self.s.model, self.calib, self.ref_calib)
            except NetsculptError as e:
                self.s.notes.append(f"proposal {c.label} refused: {str(e)[:160]}")
                continue
            self.tried += 1
            # damage per unit saved; below the noise floor the larger saving wins
            saving = min(c.saving, self.gap)
            ranked.append(((max(c.proxy - proxy_now, 0.0) + NOISE_KL) / saving, -saving, i))
        return [cands[i] for *_, i in sorted(ranked)]

    def heal(self, step: int) -> bool:
        cfg, s = self.cfg, self.s
        if not (cfg.heal and s.has_data):
            return False
        from netsculpt.heal import heal

        held = (len(self.calib), len(self.calib) + len(self.held))
        data = s.data if self.held is self.calib else WithoutHeldOut(s.data, *held, s.batch_size)
        heal(s.model, data, teacher=self.original, steps=cfg.heal_steps, lr=cfg.heal_lr,
             loss="kd", val_fraction=0.0, seed=cfg.seed + step, progress=False)  # fmt: skip
        s.model.train(self.training)
        self.recalibrate()
        return True

    def recalibrate(self) -> None:
        if self.s.has_data and batchnorms(self.s.model):
            recalibrate_bn(self.s.model, self.calib)

    def step(self, i: int, driving: Budget, row: dict[str, Any]) -> dict[str, Any] | None:
        cands = self.proposals(driving, row)
        if not cands:
            self.stop = "exhausted"
            return None
        ranked = self.try_all(cands, row["proxy_kl"])
        if not ranked:
            self.stop = self.stop or "exhausted"
            return None
        for best in ranked[: 1 + RETRIES]:
            new = self.accept(i, best)
            if new is not None:
                new["proposals"] = len(cands)
                new["proxy_pred"] = best.proxy
                return new
            if self.out_of_time():
                self.stop = "time"
                return None
        self.stop = "max_drop"
        return None

    def accept(self, i: int, best: Candidate) -> dict[str, Any] | None:
        """Apply ``best``, heal when due, measure; None (and the model as before) when the
        held-out drop exceeds ``max_drop`` even after a heal."""
        s, cfg = self.s, self.cfg
        undo = s.checkpoint()
        weights = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
        done = s.apply(best.plan(i), safe=False)
        self.recalibrate()
        healed = self.heal(i) if i % cfg.heal_every == 0 else False
        new = self.measure(i, best.label, healed)
        if cfg.max_drop is not None and new["drop"] > cfg.max_drop and not healed:
            healed = self.heal(i)  # a step that a heal would repair is not a stop yet
            if healed:
                new = self.measure(i, best.label, healed)
        if cfg.max_drop is not None and new["drop"] > cfg.max_drop:
            undo()
            s.model.load_state_dict(weights)
            self.rejected = self.rejected or (best.label, new["drop"])
            return None
        self.rejected = None
        self.actions.extend(done.actions)
        return new

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> Any:
        s, cfg = self.s, self.cfg
        model = s.model
        self.training = model.training
        model.eval()  # an inference model: folds are exact, BatchNorms use their statistics
        self._data()
        self._latency_setup()
        before = s.snapshot()
        before.latency_ms = self.latency(CONFIRM) if cfg.target_latency is not None else None
        self.original = copy.deepcopy(model).eval()
        self.ref_calib = Q.outputs(self.original, self.calib)
        self.ref_held = Q.outputs(self.original, self.held)
        self.base_metric = Q.held_out(model, self.held, self.ref_held, self.kind)
        before.metric, before.metric_name = self.base_metric, self.kind
        base = {"latency": before.latency_ms, "macs": before.macs, "params": before.params}
        self.budgets = resolve(cfg, base)
        if cfg.fold:
            self._fold()
        if any(b.metric == "latency" for b in self.budgets):
            self._build_table()
        self.blocks_ok = can_remove_blocks()
        if cfg.cut and not self.blocks_ok:
            s.notes.append("block removal not proposed: this install's cut plans no remove_block")
        row = self.measure(0, "start" + (" (BatchNorms folded)" if self.actions else ""))
        self.trace.append(row)
        self._progress(row)
        for i in range(1, cfg.max_steps + 1):
            if self.met(row):
                self.stop = "target"
                break
            unmet = [b for b in self.budgets if not b.met(self.value(row, b.metric))]
            if self.out_of_time():
                self.stop = "time"
                break
            driving = max(unmet, key=lambda b: b.remaining(self.value(row, b.metric)))
            new = self.step(i, driving, row)
            if new is None:
                break
            row = new
            self.trace.append(row)
            self._progress(row)
        else:
            self.stop = "max_steps"
        model.train(self.training)
        return self._report(before, row)

    def _progress(self, row: dict[str, Any]) -> None:
        if not self.cfg.progress:
            return
        lat = (f" | latency {row['latency_ms']:.3f} ms (table {row['table_ms']:.3f})"
               if "latency_ms" in row else "")  # fmt: skip
        print(
            f"optimize step {row['step']}: {row['edit']} | MACs {row['macs']:,} | params "
            f"{row['params']:,}{lat} | {Q.describe(self.kind, row[self.kind])} | "
            f"{row['seconds']:.1f}s",
            file=sys.stderr,
            flush=True,
        )

    def _stop_note(self, row: dict[str, Any]) -> str:
        met = ", ".join(b.describe() for b in self.budgets)
        if self.stop == "target":
            return f"target reached after {row['step']} steps: {met}"
        unmet = [b.describe() for b in self.budgets if not b.met(self.value(row, b.metric))]
        if self.stop == "max_drop":
            label, drop = self.rejected
            why = f"the next step ({label}) would exceed max_drop ({drop:.4g} > {self.cfg.max_drop:g})"
        elif self.stop == "time":
            why = f"time_budget of {self.cfg.time_budget:g}s ran out (the best plan so far)"
        elif self.stop == "max_steps":
            why = f"max_steps={self.cfg.max_steps} reached"
        else:
            why = "nothing left to remove (every proposal was refused or saves nothing)"
        return f"stopped before the target ({'; '.join(unmet)}): {why}"

    def _report(self, before: Any, row: dict[str, Any]) -> Any:
        """The Report: before / after (latency timed only for a latency budget), the plan of
        the accepted actions, the trace."""
        s, cfg = self.s, self.cfg
        after = s.snapshot()
        after.latency_ms = self.latency(CONFIRM) if before.latency_ms is not None else None
        after.metric, after.metric_name = row[self.kind], self.kind
        note = self._stop_note(row)
        s.notes.append(note)
        lat = next((b for b in self.budgets if b.metric == "latency"), None)
        if lat is not None and not lat.met(after.latency_ms):
            s.notes.append(
                f"timed again at the end, the model took {after.latency_ms:.4g} ms, above the "
                f"limit of {lat.limit:.4g} ms: timings on this machine vary by that much"
            )
        plan = Plan("optimize", self.actions, {"seed": cfg.seed, **cfg.to_dict()})
        details: dict[str, Any] = {
            "stop": self.stop,
            "stop_note": note,
            "budgets": [b.as_dict() for b in self.budgets],
            "metric": self.kind,
            "trace": self.trace,
            "steps": len(self.trace) - 1,
            "proposals_tried": self.tried,
            "seconds": round(time.perf_counter() - self.t0, 3),
        }
        if self.table is not None:
            errs = [abs(r["table_error"]) for r in self.trace]
            details["latency_table"] = self.table.as_dict()
            details["table_error_max"] = max(errs) if errs else math.nan
        return s.report("optimize", {}, plan, before, after, details)
