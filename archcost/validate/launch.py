"""Start N ranks of a validation run with the standard launcher and collect what they measured.

The launcher (``torch.distributed.run``) runs in its own process group; on a timeout the whole
group is killed, so no rank outlives the run. A rank that fails writes one line saying why; the
launcher then stops the others and this module raises that line, naming the rank.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from archcost.errors import ValidationError
from archcost.io import write_json
from archcost.validate.step import RunConfig

__all__ = ["run_distributed"]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def run_distributed(cfg: RunConfig, nproc: int, timeout_s: float = 600.0,
                    pg_timeout_s: float = 300.0) -> list[dict[str, Any]]:
    """Every rank's measurements, rank order."""
    with tempfile.TemporaryDirectory(prefix="archcost-validate-") as tmp:
        tmp_path = Path(tmp)
        config = tmp_path / "config.json"
        write_json(config, {**asdict(cfg), "timeout_s": pg_timeout_s})
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "--max-restarts=0",
               "-m", "archcost.validate.worker", str(config), str(tmp_path)]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(
            max(1, (os.cpu_count() or 1) // nproc)))}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env=env)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ValidationError(f"the {nproc}-process run did not finish in {timeout_s:.0f} s "
                                  "and was stopped; fewer --steps or a smaller model") from None
        except BaseException:
            _kill_group(proc)
            raise
        errors = sorted(tmp_path.glob("rank*.error"))
        if proc.returncode != 0 or errors:
            if errors:
                rank = errors[0].stem.removeprefix("rank")
                raise ValidationError(f"rank {rank} of {nproc} failed: "
                                      f"{errors[0].read_text().strip()}")
            tail = (err.strip().splitlines() or ["no output"])[-1]
            raise ValidationError(f"the {nproc}-process run failed (exit {proc.returncode}): "
                                  f"{tail}")
        results = []
        for r in range(nproc):
            path = tmp_path / f"rank{r}.json"
            if not path.exists():
                raise ValidationError(f"rank {r} of {nproc} wrote no result")
            results.append(json.loads(path.read_text()))
        return results
