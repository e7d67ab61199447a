"""Energy and money of a training step: pure functions of time, GPU count and profile figures.

Board power is modelled between idle and TDP: a GPU draws ``idle_fraction * TDP`` when idle and
TDP while it computes, so a step whose GPUs compute for ``busy_s`` of ``step_s`` seconds draws
``TDP * (idle + (1 - idle) * busy_s / step_s)`` on average. Each node adds its fixed overhead
(CPUs, NICs, fans, switches' share) for the whole step. NB: TDP is an upper bound on sustained
board power; communication-bound phases draw less than compute-bound ones, which this counts
as idle.
"""

from __future__ import annotations

import numpy as np

__all__ = ["step_energy_j", "step_cost_usd", "price_per_gpu_hour"]


def step_energy_j(step_s, busy_s, gpus, tdp_w: float, idle_fraction: float,
                  gpus_per_node: int = 8, node_overhead_w: float = 0.0):
    """Joules one step draws on ``gpus`` GPUs. Step, busy time and GPUs are numbers or numpy
    arrays (one per plan); a float comes back for numbers."""
    step = np.asarray(step_s, dtype=np.float64)
    busy = np.clip(np.asarray(busy_s, dtype=np.float64) / np.maximum(step, 1e-300), 0.0, 1.0)
    gpu_w = tdp_w * (idle_fraction + (1.0 - idle_fraction) * busy)
    nodes = np.ceil(np.asarray(gpus, dtype=np.float64) / max(gpus_per_node, 1))
    joules = np.where(step > 0, step * (gpus * gpu_w + nodes * node_overhead_w), 0.0)
    return float(joules) if joules.ndim == 0 else joules


def step_cost_usd(step_s, gpus, usd_per_gpu_hour: float):
    """Dollars one step costs at ``usd_per_gpu_hour`` per GPU (numbers or numpy arrays)."""
    return step_s / 3600.0 * gpus * usd_per_gpu_hour


def price_per_gpu_hour(cluster) -> float | None:
    """The cluster's all-in price per GPU-hour, else its GPU's, else None."""
    if cluster.price_per_gpu_hour_usd is not None:
        return float(cluster.price_per_gpu_hour_usd)
    return cluster.gpu.price_per_gpu_hour_usd
