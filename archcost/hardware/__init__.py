"""Hardware: GPU and cluster profiles read from YAML (bundled in ``archcost.profiles``).

Modules: ``units`` parses "989 TFLOP/s"-style quantities to SI, ``reader`` validates fields with
one-line errors, ``profile`` holds the frozen dataclasses and the loaders, ``tables`` the measured
GEMM-by-shape and attention-kernel tables. ``archcost calibrate``: ``calibrate`` times this
machine (``attnbench`` its attention kernels, ``collective_launch`` starts the ranks of its
collective benchmark, ``collective_worker`` is one), ``fit`` turns timings into peaks, curves and
latency/bandwidth fits, ``writer`` writes the profiles as YAML; none of them is imported here.
"""

from archcost.hardware.profile import (
    DTYPES,
    ClusterProfile,
    Dtype,
    EfficiencyCurve,
    GpuProfile,
    LinkLevel,
    Topology,
    list_profiles,
    load_any,
    load_cluster,
    load_gpu,
)

__all__ = [
    "DTYPES", "ClusterProfile", "Dtype", "EfficiencyCurve", "GpuProfile", "LinkLevel", "Topology",
    "list_profiles", "load_any", "load_cluster", "load_gpu",
]
