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


# NB: on the CPU a 2-rank gloo run with ZeroRedundancyOptimizer is sometimes killed by SIGABRT
# inside the library (about one run in four on a 2-core host, at any commit of this tool; not
# understood yet). A rank that dies by a signal without writing an error is started again, with
# the whole run, at most this many more times; a rank's own error is never retried.
SIGNAL_RETRIES = 2


def run_distributed(cfg: RunConfig, nproc: int, timeout_s: float = 600.0,
                    pg_timeout_s: float = 300.0) -> list[dict[str, Any]]:
    """Every rank's measurements, rank order."""
    for attempt in range(SIGNAL_RETRIES + 1):
        try:
            return _run_once(cfg, nproc, timeout_s, pg_timeout_s)
        except _KilledBySignal as exc:
            if attempt == SIGNAL_RETRIES:
                raise ValidationError(str(exc)) from None
    raise AssertionError("unreachable")


class _KilledBySignal(Exception):
    pass


def _run_once(cfg: RunConfig, nproc: int, timeout_s: float,
              pg_timeout_s: float) -> list[dict[str, Any]]:
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
            tail = log_tail(log_path)
            error = _KilledBySignal if "Signal " in tail else ValidationError
            raise error(f"the {nproc}-process run failed (exit {code}): {tail}")
        results = []
        for r in range(nproc):
            path = tmp_path / f"rank{r}.json"
            if not path.exists():
                raise ValidationError(f"rank {r} of {nproc} wrote no result")
            results.append(json.loads(path.read_text()))
        return results
