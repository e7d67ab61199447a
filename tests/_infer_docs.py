"""Real inference documents for the report, diff, schema and sweep tests, written once per test
process by the commands themselves: ``archcost infer`` of the tiny Llama (batch 2, 16 prompt
tokens, 8 generated) on one H100, and ``archcost sweep --infer`` of the same generation over
batch 1, 2 and the H100 and A100 profiles (the H100 point at batch 2 is the infer document's
setting)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests._report_docs import _invoke
from tests.conftest import MODELS

LLAMA = [str(MODELS / "llama.py"), "--set", "preset=tiny"]
GENERATION = ["-i", "16", "-n", "8"]
INFER = [*LLAMA, "--hardware", "h100-sxm", "-b", "2", *GENERATION]
SWEEP = [*LLAMA, "--infer", *GENERATION, "--vary", "batch=1,2", "--vary",
         "hardware=h100-sxm,a100-sxm-80gb"]


@pytest.fixture(scope="session")
def infer_docs(tmp_path_factory) -> dict[str, Path]:
    """name -> file: ``infer`` (archcost infer -o), ``sweep`` (archcost sweep --infer -o).
    Under pytest-xdist the first worker writes them while the others wait."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    d = base / "infer_docs"
    d.mkdir(exist_ok=True)
    files = {"infer": d / "infer.json", "sweep": d / "sweep.json"}
    with FileLock(str(d / ".lock")):
        if not (d / ".done").exists():
            _invoke(["infer", *INFER, "-o", str(files["infer"])])
            _invoke(["sweep", *SWEEP, "--json", "-o", str(files["sweep"])])
            (d / ".done").write_text("ok")
    return files
