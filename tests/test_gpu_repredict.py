"""benchmarks/gpu_repredict.py prices a validation folder's runs again: on the profile and code
they were priced with, "now" equals "then" for every component it reprices (the workload is
rebuilt from the documents alone), here on real CPU runs of tiny models."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

TINY = ["--set", "layers=2", "--set", "hidden=64", "--set", "heads=4", "--set", "vocab=256"]


def _archcost(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "archcost", *args], check=True, cwd=ROOT,
                   capture_output=True, timeout=600)


def test_repricing_a_folder_with_the_same_code_gives_the_same_predictions(tmp_path):
    _archcost("validate", "models/gpt2.py", *TINY, "-s", "32", "--plan", "mbs=2,gbs=2",
              "--hardware", "cpu", "--steps", "1", "--warmup", "0", "--json",
              "-o", str(tmp_path / "gpt2.json"))
    _archcost("validate", "models/gpt2.py", *TINY, "--infer", "-b", "2", "-i", "16", "-n", "4",
              "--hardware", "cpu", "--steps", "1", "--warmup", "0", "--dtype", "fp32", "--json",
              "-o", str(tmp_path / "infer-gpt2.json"))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_repredict.py"),
                          str(tmp_path)], check=True, capture_output=True, text=True,
                         cwd=ROOT, timeout=600).stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines()
            if line.startswith("| gpt2") or line.startswith("| infer-gpt2")]
    got = {(r[0].strip(), r[1].strip()) for r in rows}
    assert got == {("gpt2", c) for c in ("step_time", "forward", "backward", "optimizer")} | {
        ("infer-gpt2", "ttft"), ("infer-gpt2", "tpot")}
    for r in rows:
        then, now = (float(r[i].strip().removesuffix(" ms")) for i in (3, 5))
        assert now == pytest.approx(then, rel=1e-3, abs=0.006), r  # printed to 0.01 ms
