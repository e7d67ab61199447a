"""``archcost validate``: real timed steps (one process, and two gloo processes started with
the standard launcher: data, tensor and pipeline parallel) against the prediction. Ground
truth: the run itself, and for sharded runs the one-process run's losses."""

from __future__ import annotations

import json
import math
import os

import pytest

from archcost.cli import app
from tests.conftest import DATA, MODELS

GPT = [str(MODELS / "gpt2.py"), "--set", "layers=2", "--set", "hidden=64", "--set", "heads=4",
       "--set", "vocab=256", "-s", "64"]
MLP = [str(MODELS / "seed_mlp.py"), "-s", "1"]
LLAMA = [str(MODELS / "llama.py"), "--set", "preset=tiny", "-s", "32"]  # 2 layers, hidden 64
CLUSTER = ["--hardware", "cpu-host"]  # CPU ranks: a GPU cluster is refused on a CPU


def _run(runner, args):
    r = runner.invoke(app, ["validate", *args, "--steps", "2", "--warmup", "1", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def _components(doc):
    return {c["name"]: c for c in doc["validation"]["components"]}


def _losses(doc):
    """Each rank's losses (warm-up step first), None for a rank that computes no loss."""
    return [r["losses"] for r in doc["validation"]["measured"]]


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
                        *CLUSTER])
    rows = _components(doc)
    assert rows["dp_comm_bytes"]["measured"] == pytest.approx(rows["dp_comm_bytes"]["predicted"])
    # time: the step's collectives replayed one at a time after a barrier (what the formulas
    # describe), on the slowest rank; the in-step host time is kept in the note
    replayed = [r["comm"]["groups"]["dp"]["replayed_seconds"]
                for r in doc["validation"]["measured"]]
    assert rows["dp_comm_time"]["measured"] == pytest.approx(max(replayed)) and max(replayed) > 0
    assert "replayed" in rows["dp_comm_time"]["note"]
    assert len(doc["validation"]["measured"]) == 2
    assert doc["nproc"] == 2


@pytest.mark.parametrize("sp", [0, 1])
def test_tensor_parallel_moves_the_predicted_bytes_and_computes_the_same_losses(runner, sp):
    """tp=2 on two gloo ranks (DTensor, llama's tp_plan): the first step's loss, before any
    update, and the later ones equal the one-process run's on the same weights and data. Bytes:
    one all-reduce of the activation (mbs x s x h fp32) per row-parallel projection (2 per
    layer) and pass (forward, backward), as estimated; with sequence parallelism an all-gather
    and a reduce-scatter instead, plus what the estimate leaves out: the head's input gathered
    in forward, the embedding output's gradient gathered in backward, and one all-reduce of the
    norm weights' partial gradients (2 per layer + the final norm)."""
    act = 4 * 32 * 64 * 4
    doc = _run(runner, [*LLAMA, "--nproc", "2", "--plan", f"tp=2,sp={sp},mbs=4,gbs=4", *CLUSTER])
    rows = _components(doc)
    assert {"tp_comm_bytes", "tp_comm_time"} <= set(rows) and "dp_comm_bytes" not in rows
    tp = rows["tp_comm_bytes"]
    if sp:
        assert tp["predicted"] == 2 * (2 * 2 * 2 * act)  # all-gathers and reduce-scatters
        assert tp["measured"] == 2 * 2 * 2 * 2 * act + 2 * act + (2 * 2 + 1) * 64 * 4
        assert "leave out" in tp["note"]
    else:
        assert tp["predicted"] == tp["measured"] == 2 * 2 * 2 * act
    assert rows["tp_comm_time"]["measured"] > 0
    ref = _losses(_run(runner, [*LLAMA, "--plan", "mbs=4,gbs=4"]))[0]
    for losses in _losses(doc):  # both ranks
        assert all(math.isfinite(x) for x in losses)
        assert losses == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("args, schedule", [(LLAMA, "1f1b"),
                                            ([*GPT, "--set", "tie_weights=false"], "gpipe")],
                         ids=["llama-1f1b", "gpt2-gpipe"])
def test_pipeline_sends_the_predicted_bytes_and_computes_the_same_losses(runner, args,
                                                                         schedule):
    """pp=2 on two gloo ranks (torch.distributed.pipelining, one block per stage, 4
    micro-batches): per micro-batch the activation (mbs x s x h fp32) goes forward and its
    gradient back, as estimated; the last stage's losses equal the one-process run's with
    gradient accumulation over the same micro-batches."""
    seq = int(args[args.index("-s") + 1])
    act = 2 * seq * 64 * 4
    doc = _run(runner, [*args, "--nproc", "2", "--plan",
                        f"pp=2,mbs=2,gbs=8,schedule={schedule}", *CLUSTER])
    rows = _components(doc)
    pp = rows["pp_comm_bytes"]
    assert pp["predicted"] == pp["measured"] == 2 * 4 * act
    assert rows["pp_comm_time"]["measured"] > 0
    assert rows["forward"]["measured"] is None and rows["backward"]["measured"] is None
    assert rows["pipeline_schedule"]["measured"] > 0 and rows["step_time"]["measured"] > 0
    first, last = _losses(doc)
    assert all(x is None for x in first)
    assert all(math.isfinite(x) for x in last)
    ref = _losses(_run(runner, [*args, "--plan", "mbs=2,gbs=8"]))[0]
    assert last == pytest.approx(ref, rel=1e-5)


def test_a_rank_that_dies_is_named_and_nothing_hangs(runner):
    before = _children()
    r = runner.invoke(app, ["validate", str(DATA / "models" / "dies_on_rank1.py"), "-s", "1",
                            "--nproc", "2", "--plan", "dp=2,mbs=2,gbs=4", *CLUSTER,
                            "--timeout", "120"])
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
    ([*GPT, "--plan", "tp=2,gbs=4", "--nproc", "2", *CLUSTER],
     "model gpt2.py defines no tp_plan(model); tensor-parallel validation needs one"),
    ([str(MODELS / "bert.py"), "--set", "layers=2", "--set", "hidden=64", "--set", "heads=4",
      "--set", "vocab=256", "-s", "32", "--plan", "pp=2,mbs=2,gbs=4", "--nproc", "2", *CLUSTER],
     "model bert.py defines no pipeline_stage"),
    ([*GPT, "--plan", "pp=2,mbs=2,gbs=4", "--nproc", "2", *CLUSTER], "--set tie_weights=false"),
    ([*LLAMA, "--plan", "cp=2,mbs=2,gbs=4", "--nproc", "2", *CLUSTER], "cp/ep and offload"),
    ([*LLAMA, "--plan", "dp=2,tp=2,mbs=2,gbs=4", "--nproc", "4", *CLUSTER], "with dp=1"),
    ([*LLAMA, "--plan", "pp=2,vpp=2,schedule=interleaved-1f1b,mbs=1,gbs=4", "--nproc", "2",
      *CLUSTER], "schedule=1f1b or gpipe"),
    ([*GPT, "--plan", "mbs=4,gbs=4", "--dtype", "bf16-mixed"], "--dtype 'bf16-mixed'"),
    ([*GPT, "--plan", "dp=2,mbs=4,gbs=8", "--nproc", "2", "--hardware", "h100-sxm"],
     "need a cluster profile"),
    # a GPU's figures against CPU timings: refused, naming the CPU's profile and calibration
    ([*GPT, "--plan", "mbs=4,gbs=4", "--hardware", "h100-sxm"],
     "--hardware h100-sxm describes a GPU (h100-sxm), but --device cpu runs on this CPU: leave "
     "--hardware out (the bundled cpu) or calibrate this CPU (archcost calibrate --device cpu"),
    ([*GPT, "--plan", "dp=2,mbs=4,gbs=8", "--nproc", "2", "--hardware", "dgx-h100-ndr"],
     "describes a GPU (h100-sxm), but --device cpu runs on this CPU: leave --hardware out (the "
     "bundled cpu-host)"),
    ([str(MODELS / "gpt2.py"), "--set", "layers=64", "--set", "hidden=8192", "--set",
      "heads=64", "-s", "64", "--plan", "mbs=1,gbs=1"], "nothing was allocated"),
])
def test_bad_input_is_refused_before_running(runner, args, message):
    r = runner.invoke(app, ["validate", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output.replace("\n", " ")
    assert "Traceback" not in r.output


def test_a_rank_killed_without_a_message_is_named_from_the_launchers_summary(tmp_path,
                                                                             monkeypatch):
    """A real launch whose rank 1 is killed by SIGKILL (no error file): the one line is the
    launcher's root cause, rank and exit code, not the rule its summary ends with."""
    from archcost.launch import launch_ranks, log_tail

    (tmp_path / "killed_rank.py").write_text(
        "import os, signal, time\n"
        "if os.environ['RANK'] == '1':\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "time.sleep(30)\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    log = tmp_path / "launcher.log"
    assert launch_ranks("killed_rank", [], 2, log, 120.0) != 0
    line = log_tail(log)
    assert "\n" not in line and line.startswith("rank 1"), line
    assert "exitcode -9" in line and "SIGKILL" in line, line


def test_rank_threads_is_the_launchers_split_and_the_share_follows_it(monkeypatch):
    """Each rank gets OMP_NUM_THREADS where set to a count, else cores // nproc; a profile
    calibrated on this CPU with T threads is shared at that over T, a datasheet one at 1/N, one
    calibrated on a GPU not at all."""
    from types import SimpleNamespace

    from archcost.launch import rank_threads
    from archcost.validate.compare import cpu_rank_share

    cores = os.cpu_count() or 1
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert rank_threads(2) == max(1, cores // 2) and rank_threads(10 * cores) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert rank_threads(2) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert rank_threads(2) == max(1, cores // 2)
    cpu = SimpleNamespace(calibration={"device_kind": "cpu", "threads": 8})
    assert cpu_rank_share(cpu, 2) == 0.25 and cpu_rank_share(cpu, 16) == 1.0
    assert cpu_rank_share(SimpleNamespace(calibration=None), 1) == 1.0
    # a datasheet profile (the bundled cpu) describes the whole host: N ranks split it
    assert cpu_rank_share(SimpleNamespace(calibration=None), 1, nproc=2) == 0.5
    assert cpu_rank_share(SimpleNamespace(calibration={"device_kind": "cuda", "threads": 8}),
                          1) == 1.0


def test_subnormal_floats_are_counted_exactly():
    """Brute force against a closed form: of x * 1 over six fp32 values, three are nonzero and
    below fp32's smallest normal (1.18e-38); a function without them counts none."""
    import torch

    from archcost.validate.subnormal import count_subnormals, subnormal_warning, summed

    x = torch.tensor([1e-39, -2e-39, 0.0, 1.0, 1e-45, 3e-38])
    assert count_subnormals(lambda: x * 1.0) == {"elements": 6, "subnormal": 3}
    assert count_subnormals(lambda: x + 1.0) == {"elements": 6, "subnormal": 0}
    assert subnormal_warning({"elements": 6, "subnormal": 0}, "a step") is None
    assert subnormal_warning(None, "a step") is None
    line = subnormal_warning({"elements": 6, "subnormal": 3}, "a step")
    assert "3 of the 6" in line and "50.00%" in line and "\n" not in line
    # ranks of one step: the counts add, a rank that did not count (None) left out
    assert summed([{"elements": 6, "subnormal": 0}, None, {"elements": 10, "subnormal": 3}]) \
        == {"elements": 16, "subnormal": 3}
    assert summed([None, None]) is None
    assert "3 of the 12" in subnormal_warning(summed([{"elements": 6, "subnormal": 0},
                                                      {"elements": 6, "subnormal": 3}]), "a step")


def test_a_step_computing_subnormal_floats_is_named_and_a_bundled_one_is_not(runner):
    """The hidden product of the MLP is subnormal by construction (4 x 64 elements, at least
    that many counted) and the run says so in one warning; seed_mlp's step has none."""
    doc = _run(runner, [str(DATA / "models" / "subnormal_mlp.py"), "-s", "1", "--plan",
                        "mbs=4,gbs=4", "--hardware", "cpu"])
    from archcost.report import schema

    schema.check(doc)
    counted = doc["validation"]["measured"][0]["subnormal"]
    assert counted["subnormal"] >= 4 * 64 and counted["elements"] > counted["subnormal"]
    said = [w for w in doc["warnings"] if "subnormal" in w]
    assert len(said) == 1 and "\n" not in said[0]
    doc = _run(runner, [*MLP, "--plan", "mbs=4,gbs=4"])
    assert doc["validation"]["measured"][0]["subnormal"]["subnormal"] == 0
    assert not [w for w in doc["warnings"] if "subnormal" in w]


def test_a_profile_of_another_kind_of_device_is_refused():
    """A profile says which device it describes (its calibration's device_kind; the bundled
    cpu and GPU datasheets by name); predictions for one kind against timings of the other are
    refused, both ways. A file of figures that does not say is taken at its word."""
    import dataclasses

    from archcost.errors import ConfigError
    from archcost.hardware.profile import load_gpu
    from archcost.validate.compare import profile_device, validation_cluster

    cpu, h100 = load_gpu("cpu"), load_gpu("h100-sxm")
    assert (profile_device(cpu), profile_device(h100)) == ("cpu", "cuda")
    measured = dataclasses.replace(h100, name="mine", calibration={"device_kind": "cpu"})
    assert profile_device(measured) == "cpu"
    assert profile_device(dataclasses.replace(h100, name="mine")) is None
    assert profile_device(dataclasses.replace(cpu, mem_bytes=1e9)) is None  # edited: not ours
    with pytest.raises(ConfigError, match="describes a CPU \\(cpu\\), but --device cuda"):
        validation_cluster("cpu", "cuda", 1)
    with pytest.raises(ConfigError, match="describes a GPU \\(h100-sxm\\), but --device cpu"):
        validation_cluster("dgx-h100-ndr", "cpu", 2)
    assert validation_cluster("h100-sxm", "cuda", 1).gpu == h100
    assert validation_cluster("cpu-host", "cpu", 2).gpu == cpu
