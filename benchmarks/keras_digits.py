"""Keras: a CNN on digits, 50% of the MACs plus a short heal — netsculpt.keras beside
tensorflow-model-optimization's ``prune_low_magnitude``, on the Keras backend it runs on.

Per seed: a Keras 3 CNN (three 3×3 convs, global pooling, two Dense) is trained on the digits
(8×8×1 images) with Keras ``fit``. Then:

- netsculpt: ``nk.prune(model, x, target_macs=0.5, importance=...)`` (L2 magnitude, and Taylor
  on training batches), each followed by ``nk.heal`` (Keras ``fit``) for the heal epochs;
- tfmot: ``prune_low_magnitude`` on the Keras 3 model (its error, if it fails, is the row), and
  on the same CNN in tf-keras with the trained weights, at the kernel sparsity that leaves as
  many non-zero weights as netsculpt's L2 result has parameters, with each of its schedules
  (``ConstantSparsity``, ``PolynomialDecay``), fine-tuned for the same epochs with the same
  optimizer, then ``strip_pruning`` (``_keras_tfmot.py``, in its own process: tf-keras needs
  ``TF_USE_LEGACY_KERAS=1``; ``--tfmot-python`` names the interpreter of a TensorFlow venv).
  Its stripped weights are loaded into a Keras 3 copy of the CNN, timed and saved as the others.

Measured per model, in this process, by Keras: test / validation accuracy (``predict``), params
(non-zero weights for tfmot), MACs per sample (the torch mirror's count), ``.keras`` file size
(and gzip -9 of it: what zeros buy), latency of ``predict_on_batch`` at batch 1 and 256 (one
thread; median over rounds that alternate the models, each round the median of repeats). Each
side's configuration is chosen on validation accuracy (mean over the seeds); the test split only
reports. Writes the section ``keras-digits-<backend>`` of RESULTS.md.

    KERAS_BACKEND=tensorflow python benchmarks/keras_digits.py [--seeds 0 1 2] [--no-write]
    KERAS_BACKEND=torch python benchmarks/keras_digits.py --tfmot-python .venv-tf/bin/python
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
LR, BATCH = 1e-3, 64
SCHEDULES = ("ConstantSparsity", "PolynomialDecay")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=40, help="training epochs of the base CNN")
    p.add_argument("--heal-epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=7, help="latency rounds (models alternate)")
    p.add_argument("--tfmot-python", default=sys.executable,
                   help="interpreter with tensorflow, tensorflow-model-optimization, tf-keras")  # fmt: skip
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    return p.parse_args()


def digits() -> dict[str, np.ndarray]:
    from netsculpt.data.datasets import load_dataset

    out = {}
    for split in ("train", "val", "test"):
        x, y = load_dataset("digits", split).tensors
        out[f"x_{split}"] = x.numpy().reshape(-1, 8, 8, 1).astype(np.float32)
        out[f"y_{split}"] = y.numpy().astype(np.int64)
    return out


def keras_bytes(model, folder: Path, name: str) -> tuple[int, int]:
    """``.keras`` file size (saved uncompiled) and its gzip -9 size."""
    path = folder / f"{name}.keras"
    bare = type(model).from_config(model.get_config())  # uncompiled: no optimizer slots saved
    bare.set_weights(model.get_weights())
    bare.save(path)
    raw = path.read_bytes()
    return len(raw), len(gzip.compress(raw, 9))


def latencies(models: dict, xs: dict[str, np.ndarray], rounds: int, reps: int = 10) -> dict:
    """``{name: {batch: ms}}``: median over rounds (the models alternate, the order rotates
    each round) of the median of ``reps`` timed ``predict_on_batch`` calls."""
    names = list(models)
    got = {n: {b: [] for b in xs} for n in names}
    for n in names:
        for x in xs.values():
            for _ in range(3):
                models[n].predict_on_batch(x)  # warm-up: traces, allocations
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            for b, x in xs.items():
                times = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    models[n].predict_on_batch(x)
                    times.append(time.perf_counter() - t0)
                got[n][b].append(statistics.median(times) * 1e3)
    return {n: {b: statistics.median(v) for b, v in per.items()} for n, per in got.items()}


def run_tfmot(py: str, data: dict, weights: list, args: dict, folder: Path) -> dict:
    """Both modes of ``_keras_tfmot.py``; ``{"keras3": ..., "tf_keras": ...}`` (their JSON)."""
    src = folder / "tfmot_in.npz"
    np.savez(src, **data, **{f"w{i}": w for i, w in enumerate(weights)})
    src.with_suffix(".json").write_text(json.dumps({**args, "n_weights": len(weights)}))
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "PYTHONPATH")}
    env.update(OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    out = {}
    for mode in ("keras3", "tf_keras"):
        cmd = [py, str(HERE / "_keras_tfmot.py"), mode, str(src), str(folder)]
        try:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
        except OSError as e:
            out[mode] = {"error": f"{type(e).__name__}: {e}"}
            continue
        path = folder / f"{mode}.json"
        if r.returncode != 0 or not path.exists():
            tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
            out[mode] = {"error": f"exit {r.returncode}: {tail[:300]}"}
        else:
            out[mode] = json.loads(path.read_text())
    return out


def run_seed(seed: int, data: dict, a: argparse.Namespace, folder: Path) -> tuple[list, dict]:
    import keras
    from _keras_tfmot import accuracy, cnn, compile_cnn

    import netsculpt.keras as nk

    xtr, ytr = data["x_train"], data["y_train"]
    keras.utils.set_random_seed(seed)
    model = cnn(keras)
    compile_cnn(keras, model, LR)
    model.fit(xtr, ytr, epochs=a.epochs, batch_size=BATCH, verbose=0)
    x_ex = xtr[:BATCH]
    models, rows = {"original": model}, {}
    rows["original"] = {"params": model.count_params(), "pre_heal": None}
    for imp in ("l2", "taylor"):
        kw = {"data": (xtr, ytr)} if imp == "taylor" else {}
        pruned, rep = nk.prune(model, x_ex, target_macs=0.5, importance=imp, seed=seed, **kw)
        healed, _ = nk.heal(pruned, (xtr, ytr), epochs=a.heal_epochs, batch_size=BATCH, seed=seed)
        name = f"netsculpt {imp}"
        models[name] = healed
        rows[name] = {"params": healed.count_params(), "macs": rep.after.macs / len(x_ex),
                      "pre_heal": accuracy(pruned, data["x_test"], data["y_test"])}  # fmt: skip
        rows["original"]["macs"] = rep.before.macs / len(x_ex)
    kernels = sum(int(np.prod(w.shape)) for w in model.weights if "kernel" in w.path)
    others = model.count_params() - kernels
    sparsity = 1 - (rows["netsculpt l2"]["params"] - others) / kernels
    tf = run_tfmot(a.tfmot_python, data, model.get_weights(),
                   {"sparsity": sparsity, "heal_epochs": a.heal_epochs, "batch_size": BATCH,
                    "seed": seed, "lr": LR}, folder)  # fmt: skip
    for s in SCHEDULES if not tf["tf_keras"].get("error") else ():
        res = tf["tf_keras"][s]
        m = cnn(keras)
        with np.load(folder / f"{s}.npz", allow_pickle=False) as f:
            m.set_weights([f[k] for k in f.files])
        compile_cnn(keras, m, LR)
        models[f"tfmot {s}"] = m
        rows[f"tfmot {s}"] = {"params": res["nonzero"], "macs": rows["original"]["macs"],
                              "pre_heal": None, "sparsity": res["kernel_sparsity"],
                              "own_keras_bytes": res["own_keras_bytes"],
                              "worker_test": res["test_accuracy"]}  # fmt: skip
    for name, m in models.items():
        rows[name]["val"] = accuracy(m, data["x_val"], data["y_val"])
        rows[name]["test"] = accuracy(m, data["x_test"], data["y_test"])
        rows[name]["bytes"], rows[name]["gzip"] = keras_bytes(m, folder, name.replace(" ", "_"))
    lat = latencies(models, {1: data["x_test"][:1], 256: data["x_test"][:256]}, a.rounds)
    for name in models:
        rows[name]["b1"], rows[name]["b256"] = lat[name][1], lat[name][256]
    info = {"sparsity": sparsity, "keras3_error": tf["keras3"].get("error"),
            "tf_keras_error": tf["tf_keras"].get("error"),
            "versions": tf["tf_keras"].get("versions") or tf["keras3"].get("versions", {})}  # fmt: skip
    return [{"seed": seed, "method": n, **r} for n, r in rows.items()], info


def ms(values: list[float], fmt: str = "{:.3g}") -> str:
    if len(values) < 2:
        return fmt.format(values[0]) + " (1 seed)"
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def table(rows: list[dict], methods: list[str]) -> list[str]:
    out = ["| method | params (non-zero) | MACs / sample | `.keras` | `.keras` gzip -9 | "
           "latency b1 (ms) | latency b256 (ms) | b256 speed-up | test acc. before heal | "
           "val acc. | test acc. |", "|---" * 11 + "|"]  # fmt: skip
    base = {r["seed"]: r for r in rows if r["method"] == "original"}
    for m in methods:
        rs = [r for r in rows if r["method"] == m]

        def col(k: str, f: str = "{:.3g}", rs: list = rs) -> str:
            return ms([r[k] for r in rs], f)

        speed = ms([base[r["seed"]]["b256"] / r["b256"] for r in rs], "×{:.2f}")
        pre = col("pre_heal", "{:.1%}") if rs[0]["pre_heal"] is not None else "–"
        out.append(
            f"| {m} | {col('params', '{:,.0f}')} | {col('macs', '{:,.0f}')} | "
            f"{col('bytes', '{:,.0f}')} B | {col('gzip', '{:,.0f}')} B | {col('b1')} | "
            f"{col('b256')} | {speed} | {pre} | {col('val', '{:.1%}')} | {col('test', '{:.1%}')} |"
        )
    return out


def report(rows: list[dict], infos: list[dict], a: argparse.Namespace, backend: str,
           seconds: float) -> str:  # fmt: skip
    from _results import stamp

    methods = list(dict.fromkeys(r["method"] for r in rows))
    mean_val = {m: statistics.mean(r["val"] for r in rows if r["method"] == m) for m in methods}
    ours = max((m for m in methods if m.startswith("netsculpt")), key=mean_val.get)
    theirs = [m for m in methods if m.startswith("tfmot")]
    cmd = f"KERAS_BACKEND={backend} python benchmarks/keras_digits.py " + " ".join(sys.argv[1:])
    anchors = ("keras", "tensorflow-cpu", "tensorflow-model-optimization", "tf-keras")
    lines = [f"## Keras: digits CNN, 50% MACs + heal ({backend} backend)", "",
             stamp(cmd.strip(), anchors, a.tfmot_python), "",
             f"Seeds {a.seeds}; base CNN trained {a.epochs} epochs (Adam {LR}, batch {BATCH}); "
             f"heal {a.heal_epochs} epochs, same optimizer for every row. Latency: Keras "
             "`predict_on_batch`, 1 thread, median of "
             f"{a.rounds} alternating rounds. Mean ± std over the seeds.", ""]  # fmt: skip
    lines += table(rows, methods)
    lines += ["", "- tfmot `prune_low_magnitude` on the Keras 3 model: "
              + (f"`` {infos[0]['keras3_error']} ``" if infos[0]["keras3_error"] else "it ran")]  # fmt: skip
    if theirs:
        best = max(theirs, key=mean_val.get)
        sp = ms([i["sparsity"] for i in infos], "{:.1%}")
        diffs = [
            next(r["test"] for r in rows if r["method"] == ours and r["seed"] == s)
            - next(r["test"] for r in rows if r["method"] == best and r["seed"] == s)
            for s in a.seeds
        ]
        won = sum(d > 0 for d in diffs)
        versions = ", ".join(f"{k} {v}" for k, v in infos[0]["versions"].items())
        lines += [
            f"- tfmot in tf-keras ({versions}): kernel sparsity {sp}, set so that its non-zero "
            "weights equal netsculpt L2's parameters; its stripped weights were loaded into a "
            "Keras 3 copy of the CNN for every column (the accuracy tf-keras itself measured "
            "matches to "
            + f"{max(abs(r['test'] - r['worker_test']) for r in rows if 'worker_test' in r):.1e}).",
            f"- Chosen on validation: **{ours}** and **{best}**. Test accuracy, netsculpt − tfmot, "
            f"paired per seed: {ms([d * 100 for d in diffs], '{:+.1f}')} pp, netsculpt ahead in "
            f"{won} of {len(diffs)} seeds.",
        ]
    else:
        lines += [f"- tfmot with tf-keras: `` {infos[0]['tf_keras_error']} ``"]
    lines += ["", f"Wall time {seconds / 60:.1f} min."]
    return "\n".join(lines)


def main() -> None:
    a = parse()
    backend = os.environ.setdefault("KERAS_BACKEND", "torch")
    import netsculpt.keras  # noqa: F401 (before Keras: the backend's imports)

    # isort: split
    import keras

    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import torch

    torch.set_num_threads(1)
    assert keras.backend.backend() == backend
    t0 = time.time()
    data = digits()
    rows, infos = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            got, info = run_seed(seed, data, a, Path(tmp))
            rows += got
            infos.append(info)
            print(f"seed {seed}: " + ", ".join(f"{r['method']} {r['test']:.3f}" for r in got),
                  flush=True)  # fmt: skip
    text = report(rows, infos, a, backend, time.time() - t0)
    print(text)
    if not a.no_write:
        from _results import write_section

        write_section(f"keras-digits-{backend}", text)


if __name__ == "__main__":
    main()
