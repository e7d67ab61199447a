"""No hang, ever: in-place ops on views (which used to deadlock the capture) trace and count
what a real CPU step does; a capture that loops or blocks is stopped by the watchdog with one
line naming the last op and its module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from archcost.errors import TraceError
from archcost.loader import load_model_file
from archcost.trace import CaptureOptions, trace_model
from archcost.trace.precision import parse_precision
from tests.conftest import DATA, ROOT
from tests.groundtruth import real_saved_bytes, real_step_flops

FP32 = parse_precision("fp32")
VIEWS = str(DATA / "models" / "inplace_views.py")
# generous: the fixed capture takes well under a second; the old one blocked forever
LIMIT = CaptureOptions(trace_timeout_s=60)


@pytest.mark.parametrize("style", ["mla", "act_slice", "conv_inplace"])
def test_inplace_ops_on_views_trace_and_count_what_a_real_step_does(style):
    spec = load_model_file(VIEWS, {"style": style})
    t = trace_model(spec, 2, 8, FP32, options=LIMIT)
    ours = sum(d["flops"] * d["count"] for _, d in t.graph.nodes(data=True)
               if d["op_class"] in ("matmul", "conv") and d["phase"] != "optimizer")
    assert ours == real_step_flops(spec, 2, 8)
    assert sum(t.capture.saved.values()) == real_saved_bytes(spec, 2, 8)


def test_watchdog_stops_an_endless_loop_naming_the_last_op_and_module():
    spec = load_model_file(str(DATA / "models" / "loops_forever.py"))
    with pytest.raises(TraceError) as err:
        trace_model(spec, 2, 8, FP32, options=CaptureOptions(trace_timeout_s=2))
    line = str(err.value)
    assert "\n" not in line
    assert "no progress for 2 s" in line and "loops_forever.py" in line
    # the last op is one of the loop's (where the loop stands when stopped), in the model
    last = line.split("last op ")[1].split(" ")[0]
    assert last in {"aten.abs.default", "aten.sum.default", "aten.gt.Scalar",
                    "aten._local_scalar_dense.default", "aten.mul.Tensor"}, line
    assert "in module '(model)' (forward)" in line and "--trace-timeout" in line


def test_watchdog_ends_a_capture_blocked_in_native_code_with_one_line_and_exit_2():
    # blocked on a lock no Python exception can interrupt: the watchdog ends the process
    r = subprocess.run([sys.executable, "-m", "archcost", "analyze",
                        str(DATA / "models" / "deadlock.py"), "--trace-timeout", "2"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(lines) == 1 and "the capture is blocked" in lines[0], r.stderr[-2000:]
    assert "aten.addmm.default in module 'fc'" in lines[0]
    assert r.stdout == ""
