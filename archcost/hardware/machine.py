"""What this machine's compute device is called: the name ``archcost calibrate`` records in a
profile and ``archcost validate`` compares with, to tell a profile measured here from one
measured elsewhere."""

from __future__ import annotations

import platform

__all__ = ["machine_id"]


def machine_id(device: str) -> str:
    """What this machine's compute device is called (the processor model on CPU)."""
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
