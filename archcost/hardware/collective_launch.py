"""Start the collective benchmark of ``archcost calibrate``: N real ranks of
``collective_worker`` under the standard launcher (``archcost.launch``: no rank outlives the
run), and rank 0's measurements back. A rank that fails writes one line
(``*.rank<R>.error``); the first one is raised as one ``ValidationError`` line naming the rank
and the fix.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archcost.errors import ValidationError
from archcost.launch import first_rank_error, launch_ranks, log_tail

if TYPE_CHECKING:
    from archcost.hardware.calibrate import Grid

__all__ = ["run_collectives"]

Progress = Callable[[str], None]


def run_collectives(device: str, nproc: int, grid: Grid, progress: Progress | None = None,
                    timeout_s: float = 600.0, pg_timeout_s: float = 120.0) -> dict[str, Any]:
    """Rank 0's medians and spreads per collective and size (``collective_worker`` JSON)."""
    report = progress or (lambda _desc: None)
    backend = "nccl" if device == "cuda" else "gloo"
    with tempfile.TemporaryDirectory(prefix="archcost-calibrate-") as tmp:
        out = Path(tmp) / "collectives.json"
        args = ["--out", str(out), "--device", device,
                "--sizes", ",".join(str(s) for s in grid.collective_bytes),
                "--warmup", str(grid.collective_warmup), "--reps", str(grid.collective_reps),
                "--min-rep", str(grid.collective_min_rep_s), "--pg-timeout", str(pg_timeout_s)]
        log_path = Path(tmp) / "launcher.log"

        def on_line(line: str) -> None:  # rank 0's progress lines advance the bar
            if line.startswith("archcost-progress "):
                report("collectives")

        try:
            code = launch_ranks("archcost.hardware.collective_worker", args, nproc, log_path,
                                timeout_s, on_line)
        except TimeoutError:
            raise ValidationError(f"the {nproc}-process {backend} collective benchmark did not "
                                  f"finish in {timeout_s:.0f} s and was stopped; raise --timeout "
                                  "or calibrate with --nproc 1") from None
        failed = first_rank_error(list(Path(tmp).glob(f"{out.name}.rank*.error")))
        if failed:
            rank, message = failed
            raise ValidationError(
                f"collective benchmark: rank {rank} of {nproc} failed: {message}; check that "
                f"{backend} can run {nproc} processes here, or calibrate with --nproc 1")
        if code != 0 or not out.is_file():
            raise ValidationError(f"collective benchmark: the {nproc}-process launch failed "
                                  f"(exit {code}): {log_tail(log_path)}; rerun with --debug, "
                                  "or calibrate with --nproc 1")
        return json.loads(out.read_text())
