"""benchmarks/op_profile.py lines the engine's ops up with torch.profiler's: on a real CPU
training step, the matmuls the trace prices occur as often as the profiler sees them run."""

from __future__ import annotations

from tests.conftest import ROOT, load_module

op_profile = load_module(ROOT / "benchmarks" / "op_profile.py")


def test_the_profiled_matmuls_are_the_traced_ones():
    args = ("models/gpt2.py", {"layers": 2, "hidden": 64, "heads": 4, "vocab": 256}, 32, 2,
            "fp32")
    pred = op_profile.predicted(*args, "cpu", "cpu")
    meas = op_profile.measured(*args, "cpu", steps=2)
    for op in ("aten::addmm", "aten::mm", "aten::native_layer_norm"):
        assert meas[op][2] > 0 and pred[op][1] == meas[op][2], op  # occurrences per step
        assert pred[op][0] > 0 and meas[op][0] > 0  # priced and timed
    assert all(m[1] == 0.0 for m in meas.values())  # no device time on a CPU
    lines = op_profile.table(pred, meas, top=5)
    assert len(lines) == 2 + 5 + 1 and lines[-1].startswith("\nper step: host")
