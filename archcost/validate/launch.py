"""Start N ranks of a validation run with the standard launcher (``archcost.launch``: no rank
outlives the run) and collect what they measured. A rank that fails writes one line saying
why; the launcher then stops the others and this module raises that line, naming the rank.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from archcost.errors import ValidationError
from archcost.io import write_json
from archcost.launch import first_rank_error, launch_ranks, log_tail
from archcost.validate.step import RunConfig

__all__ = ["run_distributed"]


def run_distributed(cfg: RunConfig, nproc: int, timeout_s: float = 600.0,
                    pg_timeout_s: float = 300.0) -> list[dict[str, Any]]:
    """Every rank's measurements, rank order."""
    with tempfile.TemporaryDirectory(prefix="archcost-validate-") as tmp:
        tmp_path = Path(tmp)
        config = tmp_path / "config.json"
        write_json(config, {**asdict(cfg), "timeout_s": pg_timeout_s})
        log_path = tmp_path / "launcher.log"
        try:
            code = launch_ranks("archcost.validate.worker", [str(config), str(tmp_path)], nproc,
                                log_path, timeout_s)
        except TimeoutError:
            raise ValidationError(f"the {nproc}-process run did not finish in {timeout_s:.0f} s "
                                  "and was stopped; fewer --steps or a smaller model") from None
        failed = first_rank_error(list(tmp_path.glob("rank*.error")))
        if failed:
            rank, message = failed
            raise ValidationError(f"rank {rank} of {nproc} failed: {message}")
        if code != 0:
            raise ValidationError(f"the {nproc}-process run failed (exit {code}): "
                                  f"{log_tail(log_path)}")
        results = []
        for r in range(nproc):
            path = tmp_path / f"rank{r}.json"
            if not path.exists():
                raise ValidationError(f"rank {r} of {nproc} wrote no result")
            results.append(json.loads(path.read_text()))
        return results
