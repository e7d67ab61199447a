"""Everything a plan's cost depends on besides the plan: the workload (traced model), the cluster
(GPU profile and link levels) and the modelling choices, with the arrays the plan kernel reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from archcost.cost.comm import level_arrays
from archcost.cost.compute import PEAK_KEY, peak_flops_for
from archcost.errors import ConfigError
from archcost.options import Recompute
from archcost.plan.kernel import MODEL_KEYS
from archcost.plan.space import PLACEMENTS
from archcost.plan.table import CostTable, build_table
from archcost.plan.workload import Workload
from archcost.runtime import RuntimeProfile, load_runtime

__all__ = ["CostModel", "CP_COMM"]

# how context-parallel attention exchanges K and V (Transformer Engine's ``cp_comm_type``
# names): "p2p" passes blocks around the ring behind each step's attention (Megatron-LM, TE's
# default); "all_gather" gathers them before attention, exposed (Llama 3, Dubey et al. 2024
# Sec. 3.3.2)
CP_COMM = ("p2p", "all_gather")


@dataclass
class CostModel:
    workload: Workload
    cluster: object  # ClusterProfile
    # data-parallel collectives overlap the last micro-batch's backward (PyTorch DDP/FSDP,
    # Megatron-LM --overlap-grad-reduce); False: they run after it; None: as the runtime
    # profile says for the plan's ZeRO stage
    overlap_dp: bool | None = None
    # stage partition: False = balanced on traced layer costs, True = layers / stages
    uniform_stages: bool = False
    # share of device memory a plan may fill: the rest is CUDA context, communication buffers,
    # library workspaces and allocator fragmentation, which no trace sees
    usable_memory: float = 0.9
    cp_comm: str = "p2p"  # one of CP_COMM
    # the fused attention kernel that runs the model's attention ops (flash2, flash3, cudnn,
    # ...: the runtime's choice), read from the GPU profile's attention tables; None: the
    # profile's attention curves
    attention_kernel: str | None = None
    # what parameter all-gathers (ZeRO-3/FSDP before each pass, ZeRO-1/2 after the step) move:
    # None, the weights in their own dtype; a low-precision format ("fp8", "mxfp8", "nvfp4",
    # the workload's): its linear weights in that format, 1 byte per fp8 parameter (torchao's
    # FSDP float8 all-gather, Megatron's --fp8-param-gather), the rest as stored
    param_allgather_dtype: str | None = None
    _tables: dict = field(default_factory=dict, repr=False)
    _runtime: RuntimeProfile | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.cp_comm not in CP_COMM:
            raise ConfigError(f"cp_comm={self.cp_comm!r}: allowed {', '.join(CP_COMM)}")
        own = self.workload.gemm_dtype or self.workload.compute_dtype
        if self.param_allgather_dtype not in (None, PEAK_KEY.get(own)) or (
                self.param_allgather_dtype is not None and self.workload.lowp_gather_bytes <= 0):
            raise ConfigError(f"param_allgather_dtype={self.param_allgather_dtype!r}: the "
                              f"workload's GEMMs run in {own}; use None or its format")

    @property
    def gpu(self):
        return self.cluster.gpu

    @property
    def runtime(self) -> RuntimeProfile:
        """The stack the workload was traced for (its fusions, kernels and overlap rules)."""
        if self._runtime is None:
            self._runtime = self.workload.runtime or load_runtime()
        return self._runtime

    def overlaps_dp(self, zero: int) -> bool:
        """Whether data-parallel collectives overlap compute at ZeRO stage ``zero``."""
        if self.overlap_dp is not None:
            return bool(self.overlap_dp)
        return int(zero) in self.runtime.overlap_dp

    @property
    def overlap_mask(self) -> float:
        """``overlaps_dp`` as a bit mask over ZeRO stages 0-3 (the plan kernel's form)."""
        return float(sum(1 << z for z in range(4) if self.overlaps_dp(z)))

    @property
    def reduce_bytes(self) -> float:
        """Bytes per parameter of a gradient reduction, in the runtime's reduce dtype (the
        workload's grad_bytes folds the trainable share of the parameters in)."""
        w = self.workload
        share = w.trainable_params / max(w.params, 1.0)
        if share <= 0:
            return 0.0
        return self.runtime.reduce_itemsize(w.grad_bytes / share) * share

    @property
    def held_weight_bytes(self) -> float:
        """Bytes per parameter of the weights a GPU holds unsharded (ZeRO 0-2): as traced, but
        the gathered format in place of the stored dtype where the parameter all-gather moves
        a low-precision one (``param_allgather_dtype``): FSDP2 keeps the all-gather's output
        as the unsharded parameter (torchao float8 ``fsdp_post_all_gather`` returns the fp8
        tensor, torchao/float8/fsdp_utils.py), Megatron's --fp8-param-gather keeps fp8
        parameters."""
        w = self.workload
        return w.weight_bytes - (w.gather_bytes or w.weight_bytes) + self.gather_bytes

    @property
    def held_grad_bytes(self) -> float:
        """Bytes per parameter of the gradients a GPU holds between backward and the optimizer
        step: the wider of their own dtype and the reduce dtype. FSDP2 reduces into the sharded
        parameter's dtype (torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py
        ``foreach_reduce``: the reduce-scatter output is cast to the fp32 shard's dtype) and,
        while gradient sync is off (pipeline micro-batches), accumulates unsharded gradients
        in ``reduce_dtype`` (``_fsdp_param.py`` ``to_accumulated_grad_if_needed``); Megatron's
        bf16 runs keep fp32 ``main_grad`` buffers (``--accumulate-allreduce-grads-in-fp32``,
        forced for bf16)."""
        return max(self.workload.grad_bytes, self.reduce_bytes)

    @property
    def tp_comm_exposed(self) -> float:
        return self.runtime.tp_comm_exposed

    @property
    def overlap_slowdown(self) -> float:
        """How much slower compute runs beside an overlapped data-parallel collective (the
        runtime's figure)."""
        return self.runtime.overlap_slowdown

    @property
    def peak_flops(self) -> float:
        """The peak MFU is against: that of the dtype the GEMMs run in (fp8 for --dtype fp8)."""
        w = self.workload
        return peak_flops_for(self.gpu, w.gemm_dtype or w.compute_dtype, tensor_core=True)

    @property
    def gather_bytes(self) -> float:
        """Bytes per parameter a parameter all-gather moves (``param_allgather_dtype``)."""
        w = self.workload
        if self.param_allgather_dtype is not None:
            return w.lowp_gather_bytes
        return w.gather_bytes or w.weight_bytes

    @property
    def usable_bytes(self) -> float:
        return float(self.gpu.mem_bytes) * self.usable_memory

    def table(self, combos: np.ndarray) -> CostTable:
        """Cost-table rows for ``combos`` ([n, 6]: recompute, mbs, tp, sp, cp, ep), cached."""
        key = np.ascontiguousarray(combos, dtype=np.int64).tobytes()
        if key not in self._tables:
            self._tables[key] = build_table(self.workload, self.gpu, combos,
                                            self.attention_kernel)
        return self._tables[key]

    def model_vector(self, table: CostTable) -> np.ndarray:
        w = self.workload
        rc = {r: (w.ops[r].recompute_flops if r in w.ops else 0.0) for r in Recompute}
        any_ops = next(iter(w.ops.values()))
        values = {
            "layers": w.layers, "seq_len": w.seq_len, "hidden": w.hidden,
            "act_bytes": w.act_bytes, "tp_points": w.tp_points, "kv_hidden": w.kv_hidden,
            "dispatch_bytes": w.dispatch_bytes, "experts": w.shape.experts,
            "params_pre": w.params_pre, "params_block": w.params_block,
            "params_post": w.params_post, "params_expert_block": w.params_expert_block,
            "weight_bytes": w.weight_bytes, "grad_bytes": w.grad_bytes,
            "optimizer_bytes": w.optimizer_bytes,
            "optimizer_s_per_param": table.optimizer_s_per_param,
            "model_flops_per_seq": any_ops.model_flops,
            "rc_flops_none": rc[Recompute.NONE], "rc_flops_selective": rc[Recompute.SELECTIVE],
            "rc_flops_full": rc[Recompute.FULL], "peak_flops": self.peak_flops,
            "mem_capacity": self.usable_bytes, "overlap_dp": self.overlap_mask,
            "reduce_bytes": self.reduce_bytes, "tp_comm_exposed": self.tp_comm_exposed,
            "uniform_stages": float(self.uniform_stages),
            "host_link_bw": float(self.gpu.host_link_bw_bytes_per_s or 0.0),
            "host_mem_bw": float(self.gpu.host_memory_bw_bytes_per_s or 0.0),
            "gather_bytes": self.gather_bytes, "held_weight_bytes": self.held_weight_bytes,
            "cp_all_gather": float(self.cp_comm == "all_gather"),
            "overlap_slowdown": self.overlap_slowdown,
        }
        return np.array([float(values[k]) for k in MODEL_KEYS])

    def levels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(domain sizes, bandwidth, latency, GPUs per link) of the link levels."""
        return level_arrays(self.cluster)

    @staticmethod
    def placements() -> np.ndarray:
        return np.array([[a.code for a in order] for order in PLACEMENTS], dtype=np.int64)
