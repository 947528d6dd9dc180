"""Healing in two CPU processes (gloo): pruning zeros stay zero and frozen parameters stay
unchanged on both ranks, under ``accelerate launch`` (DDP) and with FSDP2 shards.

``accelerate launch --cpu --num_processes 2`` starts a single process in accelerate 1.x (its
simple launcher); two CPU processes come from ``--multi_gpu --num_processes 2`` with
``ACCELERATE_USE_CPU=1`` (torchrun, gloo, DDP). With ``--use_fsdp`` on CPU accelerate trains
with DDP instead (it shards only on an accelerator device): that test says so and skips. FSDP2
itself runs on CPU: ``torch.distributed.run`` starts two processes that heal a model sharded
with ``fully_shard`` before ``heal`` and one sharded while ``heal`` prepares it (what
accelerate's FSDP2 ``prepare`` does: the parameters become DTensor shards, the optimizer
follows them)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("accelerate")
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("two-processes")]

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import TensorDataset
    import netsculpt as ns

    modes, out = sys.argv[1].split(","), sys.argv[2]
    torch.set_num_threads(1)
    if modes == ["probe"]:  # only what accelerate makes of the launch
        from accelerate import Accelerator

        state = Accelerator().state  # as heal makes it
        kind = {"probe": {"distributed_type": str(state.distributed_type)}}
        json.dump(kind, open(f"{out}.{state.process_index}", "w"))
        sys.exit(0)
    if "accelerate" not in modes:  # torch.distributed.run: the process group is ours to start
        dist.init_process_group("gloo")

    def pruned():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                            nn.Linear(32, 2))
        ns.prune(net, torch.randn(4, 8), sparsity=0.5, remove_dead=False)
        net[0].requires_grad_(False)  # a frozen layer, masked too
        net[4].bias.requires_grad_(False)
        return net

    def shard(net):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for layer in (net[0], net[2], net[4]):
            fully_shard(layer, mesh=mesh)
        fully_shard(net, mesh=mesh)

    class ShardingPrepare:
        # accelerate's FSDP2 prepare on CPU: fully_shard, then the optimizer on the shards
        device = torch.device("cpu")
        is_main_process = property(lambda self: dist.get_rank() == 0)

        def prepare(self, *objs):
            if len(objs) == 1:
                return objs[0]
            net, opt = objs
            names = {id(p): n for n, p in net.named_parameters()}
            shard(net)
            now = dict(net.named_parameters())
            for group in opt.param_groups:  # no state yet: the shards replace the parameters
                group["params"] = [now[names[id(p)]] for p in group["params"]]
            return net, opt

        unwrap_model = staticmethod(lambda net: net)
        backward = staticmethod(lambda loss: loss.backward())
        free_memory = staticmethod(lambda: None)

    def full(p):
        return (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()

    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 8, generator=g)
    data = TensorDataset(x, (x[:, 0] > 0).long())
    result = {}
    for mode in modes:
        model = pruned()
        masks = {n: m.clone() for n, m in model._netsculpt_masks.items()}
        start = {n: full(p) for n, p in model.named_parameters()}
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        acc = None
        if mode == "fsdp2-before":
            shard(model)
        elif mode == "fsdp2-prepare":
            acc = ShardingPrepare()
        ns.heal(model, data, epochs=2, lr=1e-2, progress=False, accelerator=acc)
        end = {n: full(p) for n, p in model.named_parameters()}
        kind = None
        if mode == "accelerate":
            from accelerate import PartialState

            kind = str(PartialState().distributed_type)
        result[mode] = {
            "world": dist.get_world_size() if dist.is_initialized() else 1,
            "backend": dist.get_backend() if dist.is_initialized() else None,
            "distributed_type": kind,
            "sharded": any(hasattr(p, "full_tensor") for p in model.parameters()),
            "masked": {n: int((~m).sum()) for n, m in masks.items()},
            "revived": {n: int((end[n][~m] != 0).sum()) for n, m in masks.items()},
            "frozen": frozen,
            "frozen_changed": [n for n in frozen if not torch.equal(end[n], start[n])],
            "trained": sorted(n for n in end if not torch.equal(end[n], start[n])),
            "checksum": float(sum(float(t.double().sum()) for t in end.values())),
        }
    rank = dist.get_rank() if dist.is_initialized() else 0
    json.dump(result, open(f"{out}.{rank}", "w"))
    """
)


def _port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _launch(tmp_path, launcher: list[str], modes: str) -> list[dict]:
    script, out = tmp_path / "worker.py", tmp_path / "out"
    script.write_text(WORKER)
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", *launcher, str(script), modes, str(out)],
                          capture_output=True, text=True, timeout=240, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp_path / f"out.{rank}").read_text()) for rank in (0, 1)]


def _check(ranks: list[dict], mode: str) -> None:
    """Both ranks: zeros stay zero, frozen tensors unchanged, the rest trained, in step."""
    for r in ranks:
        res = r[mode]
        assert res["world"] == 2 and res["backend"] == "gloo", res
        assert set(res["masked"]) == {"0.weight", "2.weight", "4.weight"}
        assert all(n > 0 for n in res["masked"].values())
        assert res["revived"] == dict.fromkeys(res["masked"], 0), res["revived"]
        assert res["frozen"] == ["0.weight", "0.bias", "4.bias"]
        assert res["frozen_changed"] == []
        assert res["trained"] == ["2.bias", "2.weight", "4.weight"]
    assert ranks[0][mode]["checksum"] == ranks[1][mode]["checksum"]


ACCELERATE = ["accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip


def test_heal_under_accelerate_launch_two_cpu_processes(tmp_path):
    launcher = [*ACCELERATE, "--multi_gpu", "--main_process_port", _port()]
    ranks = _launch(tmp_path, launcher, "accelerate")
    assert ranks[0]["accelerate"]["distributed_type"] == "DistributedType.MULTI_CPU"
    _check(ranks, "accelerate")


def test_heal_under_accelerate_fsdp_two_cpu_processes(tmp_path):
    launcher = [*ACCELERATE, "--use_fsdp", "--fsdp_version", "2", "--main_process_port", _port()]
    kind = _launch(tmp_path, launcher, "probe")[0]["probe"]["distributed_type"]
    if kind != "DistributedType.FSDP":
        import accelerate

        pytest.skip(
            f"accelerate {accelerate.__version__} runs --use_fsdp on CPU as {kind} (DDP over "
            "gloo): it shards only on an accelerator device; test_heal_fsdp2_shards_on_cpu "
            "runs the FSDP2 path (DTensor shards, masks sharded alike) with torch itself"
        )
    launcher[-1] = _port()
    ranks = _launch(tmp_path, launcher, "accelerate")
    assert ranks[0]["accelerate"]["sharded"]
    _check(ranks, "accelerate")


def test_heal_fsdp2_shards_on_cpu(tmp_path):
    launcher = ["torch.distributed.run", "--nproc_per_node", "2", "--master_port", _port()]
    ranks = _launch(tmp_path, launcher, "fsdp2-before,fsdp2-prepare")
    for mode in ("fsdp2-before", "fsdp2-prepare"):
        assert all(r[mode]["sharded"] for r in ranks), mode
        _check(ranks, mode)
