"""``archcost validate``: real timed steps (one process, and two gloo processes started with
the standard launcher) against the prediction. Ground truth: the run itself."""

from __future__ import annotations

import json
import os

import pytest

from archcost.cli import app
from tests.conftest import DATA, MODELS

GPT = [str(MODELS / "gpt2.py"), "--set", "layers=2", "--set", "hidden=64", "--set", "heads=4",
       "--set", "vocab=256", "-s", "64"]
MLP = [str(MODELS / "seed_mlp.py"), "-s", "1"]


def _run(runner, args):
    r = runner.invoke(app, ["validate", *args, "--steps", "2", "--warmup", "1", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def _components(doc):
    return {c["name"]: c for c in doc["validation"]["components"]}


@pytest.mark.parametrize("args", [GPT, MLP], ids=["gpt", "seed_mlp"])
def test_one_process_peak_memory_matches_within_5_percent(runner, args):
    doc = _run(runner, [*args, "--plan", "mbs=4,gbs=4"])
    rows = _components(doc)
    assert set(rows) == {"step_time", "forward", "backward", "optimizer", "peak_memory"}
    mem = rows["peak_memory"]
    assert abs(mem["error"]) <= 0.05, mem
    for name in ("step_time", "forward", "backward", "optimizer"):
        assert rows[name]["measured"] > 0 and rows[name]["predicted"] > 0
        assert rows[name]["error"] == pytest.approx(
            rows[name]["predicted"] / rows[name]["measured"] - 1)
    assert doc["warnings"], "the bundled cpu profile is not a measurement of this machine"


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_two_processes_move_the_predicted_bytes(runner, zero):
    """DDP (zero=0), ZeRO-1 (ZeroRedundancyOptimizer), FSDP2 (zero=2, 3) on two gloo ranks:
    the bytes handed to collectives in one real step equal the estimate's (all-reduce,
    reduce-scatter + all-gather, and FSDP's gathers before forward and backward)."""
    doc = _run(runner, [*GPT, "--nproc", "2", "--plan", f"dp=2,zero={zero},mbs=4,gbs=8",
                        "--hardware", "dgx-h100-ndr"])
    rows = _components(doc)
    assert rows["dp_comm_bytes"]["measured"] == pytest.approx(rows["dp_comm_bytes"]["predicted"])
    assert rows["dp_comm_time"]["measured"] > 0
    assert len(doc["validation"]["measured"]) == 2
    assert doc["nproc"] == 2


def test_a_rank_that_dies_is_named_and_nothing_hangs(runner):
    before = _children()
    r = runner.invoke(app, ["validate", str(DATA / "models" / "dies_on_rank1.py"), "-s", "1",
                            "--nproc", "2", "--plan", "dp=2,mbs=2,gbs=4", "--hardware",
                            "dgx-h100-ndr", "--timeout", "120"])
    assert r.exit_code == 2, r.output
    assert "rank 1 of 2 failed" in r.output and "out of disk space" in r.output
    assert _children() <= before, "no process of the run outlives it"


def _children() -> set[int]:
    """Processes whose parent is this one (the launcher and its ranks, if any survived)."""
    me = os.getpid()
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == me:
                        out.add(int(pid))
            except (OSError, IndexError, ValueError):
                pass
    return out


@pytest.mark.parametrize("args, message", [
    ([*GPT, "--plan", "dp=2,mbs=4,gbs=8"], "--nproc 2"),
    ([*GPT, "--plan", "mbs=4,gbs=4", "--device", "cuda"], "no CUDA device"),
    ([*GPT, "--plan", "tp=2,gbs=4", "--nproc", "2"], "tp/pp/cp/ep plans are estimated"),
    ([*GPT, "--plan", "mbs=4,gbs=4", "--dtype", "bf16-mixed"], "--dtype 'bf16-mixed'"),
    ([*GPT, "--plan", "dp=2,mbs=4,gbs=8", "--nproc", "2", "--hardware", "cpu"],
     "need a cluster profile"),
    ([str(MODELS / "gpt2.py"), "--set", "layers=64", "--set", "hidden=8192", "--set",
      "heads=64", "-s", "64", "--plan", "mbs=1,gbs=1"], "nothing was allocated"),
])
def test_bad_input_is_refused_before_running(runner, args, message):
    r = runner.invoke(app, ["validate", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output.replace("\n", " ")
    assert "Traceback" not in r.output
