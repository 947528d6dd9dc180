"""Every script in ``benchmarks/`` answers ``--help``, and runs at its smallest setting where
that setting is cheap enough for a test (a few seconds of compute).

A smoke run is ``python benchmarks/NAME.py ARGS`` from the repository root, in a subprocess of
this interpreter; ``--help`` runs for all scripts in one such subprocess (``HELP``).
``NETSCULPT_RESULTS`` points the scripts' writer (``benchmarks/_results.py``) at a temporary
file, and every test checks that ``benchmarks/RESULTS.md`` is byte for byte unchanged
afterwards. ``torch_pruning`` (a bench extra, not a test extra) is made unimportable in the
subprocesses, so that ``--help`` is shown to work without it and the smoke runs do not depend
on whether it is installed: the Torch-Pruning rows report the ImportError instead.

Smoke runs:

- ``hf_llm.py --size tiny --layers 4 --steps 2 --heal 1 --models llama --no-write``: the whole
  table (layer cuts by every criterion, width pruning, 2:4) on a 4-layer, width-48 LLaMA.
- ``llama7b_meta.py --layers 2``: the 7B widths on the meta device with 2 decoder layers.
- ``zoo.py --only resnet18 --no-torch-pruning``: one torchvision model, written to the
  temporary results file.

``--help`` only, because no setting of these scripts is small enough:

- ``cut_grow.py``: trains ten ResCNN1D base models to convergence before any cut (~34 min).
- ``default_importance.py``: one seed at one epoch still prunes and heals the CNN nine times
  (1.8 min on this machine).
- ``detection.py``: five torchvision detectors at 224×224, each captured by scope and pruned
  (17-88 s per detector on this machine).
- ``heal_vs_torch_pruning.py``: one seed at one epoch still prunes the CNN 15 ways (Torch-Pruning's
  bisection runs its pruner 14 times per budget) and runs 30 heals; its table needs the
  Torch-Pruning rows.
- ``keras_digits.py``: each seed trains the CNN with Keras ``fit``, prunes it by bisection to
  50% MACs twice, heals four models and starts two TensorFlow processes for tfmot (minutes).
- ``optimize.py``: ``--smoke`` (2 blocks of width 16, one epoch, no Torch-Pruning) still trains
  the CNN and runs three searches with latency bisections (3 min on this machine).
- ``llm_calibrated.py``: ``--steps 2 --no-write`` still runs eight prunes of a 3.3 M LLaMA,
  each in its own process (11 min on this machine while shared).
- ``llm_ppl.py``: scores a checkpoint folder another script wrote.
- ``llmc_anchor.py``: runs in llm-compressor's own venv (``make bench-llmcompressor``).
- ``optimize_latency.py``: runs ``ns.optimize`` for a latency budget on torchvision models;
  even mobilenet_v2 at 32×32, batch 1, with a 20 s time budget takes 2.5 min here.
- ``minilm.py``: every run loads the real MiniLM, scores its layers and MLP channels on
  calibration batches and distils it (``--seeds 0 --no-long --steps 2`` is still ~40 s here).
- ``measured.py``: not a measurement; ``tests/benchmarks/test_measured.py`` runs its function
  on RESULTS.md and README.md directly.
- ``merge.py``: ``--quick`` still measures resnet50 / mobilenet_v2 latencies and trains the
  digits and mnist1d models of all four tables (minutes).
- ``rnn.py``: trains GRU / LSTM classifiers for 40 epochs per seed before any pruning.
- ``speedup.py``: the measurement is repeated CPU latency at 224×224, batch 1 and 16; even
  ``--models mobilenet_v3_small --no-torch-pruning`` takes minutes on a shared 2-core machine.
- ``timm_zoo.py``: one family is one subprocess that builds, prunes, saves and reloads a timm
  model (about 10-120 s each), too slow and too variable for a unit test; ``tests/zoo/test_timm.py``
  covers a dozen families in-process.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "RESULTS.md"

# script -> (arguments of its smallest setting, a line its output must contain), or None: --help
SCRIPTS: dict[str, tuple[str, str] | None] = {
    "cut_grow.py": None,
    "default_importance.py": None,
    "detection.py": None,
    "heal_vs_torch_pruning.py": None,
    "hf_llm.py": (
        "--size tiny --layers 4 --steps 2 --heal 1 --models llama --no-write",
        "| netsculpt 2:4 (Wanda) |",
    ),
    "keras_digits.py": None,
    "llama7b_meta.py": ("--layers 2", "| params | build model |"),
    "llm_calibrated.py": None,
    "llm_ppl.py": None,
    "llmc_anchor.py": None,
    "measured.py": None,
    "merge.py": None,
    "minilm.py": None,
    "optimize.py": None,
    "rnn.py": None,
    "optimize_latency.py": None,
    "speedup.py": None,
    "timm_zoo.py": None,
    "zoo.py": ("--only resnet18 --no-torch-pruning", "resnet18                 pass"),
}
SMOKE_TIMEOUT_S = 180  # generous: the runs take ~10-20 s of CPU, the 2 cores are shared


@pytest.fixture(scope="module")
def blocker(tmp_path_factory) -> Path:
    """A folder whose ``torch_pruning`` module raises ImportError."""
    folder = tmp_path_factory.mktemp("no_torch_pruning")
    (folder / "torch_pruning.py").write_text(
        'raise ImportError("torch_pruning is hidden from the benchmark smoke tests")\n'
    )
    return folder


@pytest.fixture
def env(blocker, tmp_path) -> dict[str, str]:
    """The subprocesses' environment: results redirected, ``torch_pruning`` unimportable."""
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(
        [str(blocker), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    out["NETSCULPT_RESULTS"] = str(tmp_path / "RESULTS.md")
    out["OMP_NUM_THREADS"] = "1"
    return out


def _run(script: str, args: list[str], env: dict[str, str], timeout: float):
    cmd = [sys.executable, f"benchmarks/{script}", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_script_is_listed():
    found = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert found == set(SCRIPTS)


# ``python benchmarks/NAME.py --help`` for every script in one interpreter, one after the other:
# each script's module code runs as ``__main__`` with its folder first on ``sys.path``, exactly as
# from the command line, but ``import torch`` is paid once instead of once per script.
HELP = """
import contextlib, io, os, runpy, sys
failed = 0
for path in sys.argv[1:]:
    sys.argv, sys.path[0], out = [path, "--help"], os.path.dirname(path), io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
        code = "finished without printing usage"
    except SystemExit as e:
        code = e.code
    except BaseException as e:
        code = repr(e)
    if code not in (0, None) or not out.getvalue().startswith("usage: "):
        failed += 1
        print(f"{os.path.basename(path)}: {code}", file=sys.stderr)
sys.exit(failed)
"""


def test_help(env):
    before = RESULTS.read_bytes()
    paths = [str(BENCH / s) for s in SCRIPTS]
    r = subprocess.run(
        [sys.executable, "-c", HELP, *paths],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert RESULTS.read_bytes() == before
    assert not Path(env["NETSCULPT_RESULTS"]).exists()


@pytest.mark.parametrize("script", [s for s, smoke in SCRIPTS.items() if smoke is not None])
def test_smallest_setting(script, env):
    args, expected = SCRIPTS[script]
    before = RESULTS.read_bytes()
    r = _run(script, shlex.split(args), env, SMOKE_TIMEOUT_S)
    assert r.returncode == 0, r.stderr[-3000:]
    assert expected in r.stdout
    assert RESULTS.read_bytes() == before
    if script == "zoo.py":  # it always writes its section: into the redirected file
        written = Path(env["NETSCULPT_RESULTS"]).read_text()
        assert "<!-- zoo:begin -->" in written and "| resnet18 | pass |" in written


def test_cut_grow_reads_the_default_criterion_without_building_a_config():
    """cut_grow.py read ``CutConfig().importance``, which raises since a CutConfig needs one of
    threshold / count / blocks / target_params: the whole benchmark stopped at its first row."""
    import importlib.util

    from netsculpt.importance import ESTIMATORS

    spec = importlib.util.spec_from_file_location("cut_grow", BENCH / "cut_grow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.default_criterion() in {*ESTIMATORS, "influence", "angular", "kl", "ppl"}
