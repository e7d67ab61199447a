"""Start the collective benchmark of ``archcost calibrate``: N real ranks of
``collective_worker`` under the standard launcher, and rank 0's measurements back.

    python -m torch.distributed.run --standalone --nproc-per-node N --max-restarts=0 \
        -m archcost.hardware.collective_worker --out TMP/collectives.json ...

The launcher runs in a session of its own and puts each rank in another (torch's elastic agent
starts every worker with ``start_new_session``), so stopping the launcher's process group does
not reach a rank whose launcher died. Every process of a run therefore carries a marker in its
environment (``ARCHCOST_CALIBRATE_RUN=<uuid>``): on a timeout, an error or an interrupt the
launcher's group is stopped (SIGTERM, then SIGKILL), then every process still carrying the
marker is killed, by its id. A rank that fails writes one line (``*.rank<R>.error``); the first
one is raised as one ``ValidationError`` line naming the rank and the fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archcost.errors import ValidationError

if TYPE_CHECKING:
    from archcost.hardware.calibrate import Grid

__all__ = ["RUN_MARKER", "run_collectives", "processes_with_env"]

RUN_MARKER = "ARCHCOST_CALIBRATE_RUN"  # environment variable naming one run's processes
Progress = Callable[[str], None]


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of this user's processes (not this one) whose environment has ``name=value``."""
    needle = f"{name}={value}".encode()
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def _stop(proc: subprocess.Popen, marker: str) -> None:
    """Stop the launcher's process group, then any rank of this run still alive (each rank
    runs in a session of its own, out of the launcher's group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
    for pid in processes_with_env(RUN_MARKER, marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_collectives(device: str, nproc: int, grid: Grid, progress: Progress | None = None,
                    timeout_s: float = 600.0, pg_timeout_s: float = 120.0) -> dict[str, Any]:
    """Rank 0's medians and spreads per collective and size (``collective_worker`` JSON)."""
    report = progress or (lambda _desc: None)
    backend = "nccl" if device == "cuda" else "gloo"
    marker = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="archcost-calibrate-") as tmp:
        out = Path(tmp) / "collectives.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "--max-restarts=0",
               "-m", "archcost.hardware.collective_worker", "--out", str(out), "--device", device,
               "--sizes", ",".join(str(s) for s in grid.collective_bytes),
               "--warmup", str(grid.collective_warmup), "--reps", str(grid.collective_reps),
               "--min-rep", str(grid.collective_min_rep_s), "--pg-timeout", str(pg_timeout_s)]
        env = {**os.environ, RUN_MARKER: marker, "OMP_NUM_THREADS": os.environ.get(
            "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))}
        log_path = Path(tmp) / "launcher.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                    start_new_session=True, env=env)
        reader = threading.Thread(target=_follow, args=(proc, report), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(proc, marker)
            raise ValidationError(f"the {nproc}-process {backend} collective benchmark did not "
                                  f"finish in {timeout_s:.0f} s and was stopped; raise --timeout "
                                  "or calibrate with --nproc 1") from None
        except BaseException:
            _stop(proc, marker)
            raise
        finally:
            reader.join(timeout=5)
        _stop(proc, marker)  # nothing left on success; a crashed launcher may leave ranks
        errors = sorted(Path(tmp).glob(f"{out.name}.rank*.error"),
                        key=lambda p: int(p.name.rsplit("rank", 1)[1].split(".")[0]))
        if errors:
            rank = errors[0].name.rsplit("rank", 1)[1].split(".")[0]
            raise ValidationError(
                f"collective benchmark: rank {rank} of {nproc} failed: "
                f"{errors[0].read_text().strip()}; check that {backend} can run {nproc} processes "
                "here, or calibrate with --nproc 1")
        if proc.returncode != 0 or not out.is_file():
            tail = (log_path.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise ValidationError(f"collective benchmark: the {nproc}-process launch failed "
                                  f"(exit {proc.returncode}): {tail.strip()}; rerun with --debug, "
                                  "or calibrate with --nproc 1")
        return json.loads(out.read_text())


def _follow(proc: subprocess.Popen, report: Progress) -> None:
    """Advance the progress bar on rank 0's ``archcost-progress`` lines."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("archcost-progress "):
            report("collectives")
