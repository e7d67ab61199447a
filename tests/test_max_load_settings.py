"""benchmarks/inference_max_load.py runs each published row with the caps trtllm-bench sets for
its data set (TensorRT-LLM's ``tensorrt_llm/bench/build/tuning.py``); checked here against the
rule worked by hand for two rows."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT, load_module

load_module(ROOT / "benchmarks" / "gemm_probe.py")  # puts benchmarks/ on the path
import inference_max_load as max_load  # noqa: E402


@pytest.mark.parametrize("inp, out, caps", [
    # cache (81,559 MiB / 2**30 - 8.03e9 / 2**30) * 0.95 = 68.56 GiB; a token 64 KiB in FP8:
    # 3,000 tokens a request -> 374.4 requests -> 384 (by 128); 561.7 tokens -> 2,048 at least
    (1000, 2000, (384, 2048)),
    # 256 tokens a request -> 4,387.9 requests, capped at 4,096; 8,192 tokens (by 1,024)
    (128, 128, (4096, 8192)),
])
def test_the_caps_are_trtllm_bench_s_rule_worked_by_hand(inp, out, caps):
    row = {"gpu": "H100-SXM-80GB", "input_len": str(inp), "output_len": str(out)}
    assert max_load.bench_settings(row) == caps
    cmd = max_load.command(row, [])
    assert cmd[cmd.index("--max-seqs") + 1] == str(caps[0])
    assert cmd[cmd.index("--max-batched-tokens") + 1] == str(caps[1])
