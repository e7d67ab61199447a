"""Start N ranks of a module with the standard launcher and make sure none outlives the run.

    python -m torch.distributed.run --standalone --nproc-per-node N --max-restarts=0 -m MODULE ...

The launcher runs in a session of its own and puts each rank in another (torch's elastic agent
starts every worker with ``start_new_session``), so stopping the launcher's process group does
not reach a rank whose launcher died. Every process of a run therefore carries a marker in its
environment (``ARCHCOST_RUN=<uuid>``): on a timeout, an error, an interrupt or success, the
launcher's group is stopped (SIGTERM, then SIGKILL), then every process still carrying the
marker is killed, by its id. Ranks report failure by writing ``...rank<R>.error`` files, one
line each; ``first_rank_error`` reads the lowest rank's.

Used by ``archcost calibrate`` (collective benchmark) and ``archcost validate``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["RUN_MARKER", "launch_ranks", "rank_threads", "first_rank_error", "processes_with_env"]

RUN_MARKER = "ARCHCOST_RUN"  # environment variable naming one run's processes


def processes_with_env(name: str, value: str) -> list[int]:
    """PIDs of this user's processes (not this one) whose environment has ``name=value``."""
    needle = f"{name}={value}".encode()
    found: list[int] = []
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
    """Stop the launcher's process group, then any rank of this run still alive."""
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


def rank_threads(nproc: int) -> int:
    """Threads each of ``nproc`` ranks on this host gets: ``OMP_NUM_THREADS`` where it is set to
    a count, else an equal share of the cores."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else max(1, (os.cpu_count() or 1)
                                                                      // nproc)


def launch_ranks(module: str, args: Sequence[str], nproc: int, log_path: Path,
                 timeout_s: float, on_stdout_line: Callable[[str], None] | None = None) -> int:
    """Run ``python -m module *args`` on ``nproc`` ranks; the launcher's exit code. The
    launcher's stderr goes to ``log_path``; each stdout line to ``on_stdout_line``. Raises
    ``TimeoutError`` after ``timeout_s`` seconds, once every process of the run is stopped."""
    marker = uuid.uuid4().hex
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "--max-restarts=0", "-m", module, *args]
    env = {**os.environ, RUN_MARKER: marker,
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(rank_threads(nproc)))}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                start_new_session=True, env=env)
    reader = threading.Thread(target=_follow, args=(proc, on_stdout_line), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{nproc} ranks of {module} ran past {timeout_s:.0f} s") from None
    finally:
        _stop(proc, marker)  # also on success: a crashed launcher may leave ranks
        reader.join(timeout=5)
    return proc.returncode


def _follow(proc: subprocess.Popen, on_line: Callable[[str], None] | None) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if on_line is not None:
            on_line(line)


def first_rank_error(paths: Sequence[Path]) -> tuple[int, str] | None:
    """(rank, message) of the lowest rank among ``...rank<R>.error`` files, or None."""
    def rank_of(p: Path) -> int:
        return int(p.name.rsplit("rank", 1)[1].split(".")[0])

    if not paths:
        return None
    first = min(paths, key=rank_of)
    return rank_of(first), first.read_text().strip()


_ROOT_CAUSE = re.compile(r"^\s*(rank|exitcode|traceback)\s*:\s*(.*?)\s*$")


def log_tail(log_path: Path) -> str:
    """What the launcher said about a failure without a rank's own message: the root cause of
    its failure summary (rank, exit code, signal or traceback) where it printed one, else its
    last line that is not a rule of ``=`` or ``-``."""
    lines = log_path.read_text(errors="replace").strip().splitlines() if log_path.exists() else []
    cause = dict(m.groups() for m in map(_ROOT_CAUSE.match, lines) if m)
    if "rank" in cause:
        return "; ".join(f"{k} {' '.join(cause[k].split())}"
                         for k in ("rank", "exitcode", "traceback") if k in cause)
    text = [ln.strip() for ln in lines if ln.strip().strip("=-")]
    return (text or ["no output"])[-1]
