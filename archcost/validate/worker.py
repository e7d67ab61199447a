"""One rank of a distributed validation run, started by ``torch.distributed.run``.

    python -m torch.distributed.run --standalone --nproc-per-node N \
        -m archcost.validate.worker CONFIG.json OUT_DIR

Writes ``OUT_DIR/rank<R>.json`` with its measurements, or ``OUT_DIR/rank<R>.error`` with one
line saying what failed, then exits non-zero (the launcher then stops the other ranks).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    config_path, out_dir = Path(argv[0]), Path(argv[1])
    rank = int(os.environ.get("RANK", "0"))
    try:
        import torch.distributed as dist

        from archcost.io import write_json
        from archcost.validate.step import RunConfig, run_steps

        raw = json.loads(config_path.read_text())
        timeout = datetime.timedelta(seconds=float(raw.pop("timeout_s", 300)))
        cfg = RunConfig(**raw)
        backend = "nccl" if cfg.device == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timeout)
        try:
            result = run_steps(cfg, rank=rank, distributed=True)
        finally:
            dist.destroy_process_group()
        write_json(out_dir / f"rank{rank}.json", result)
        return 0
    except Exception as exc:  # report this rank's failure in one line, then fail the launch
        first = (str(exc).strip().splitlines() or [""])[0]
        (out_dir / f"rank{rank}.error").write_text(f"{type(exc).__name__}: {first}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
