"""Runtime profiles: how a software stack executes the traced graph, read from YAML.

The traced graph says what runs; a runtime profile says how a trainer runs it: which kernel
executes ``scaled_dot_product_attention``, which chains of memory-bound ops share one kernel,
how the optimizer step is launched, what "selective" recomputation saves, in which dtype
gradients are reduced, which collectives hide behind compute, and how far the caching allocator
reserves beyond what tensors hold. It is an input of the cost engine beside the hardware
profile, and like it holds figures with their sources (in the YAML comments).

A name ("megatron", "torchtitan") is a profile bundled in ``runtime_profiles/`` of the source
tree, installed as the package ``archcost.runtime_profiles``; anything ending in ``.yaml`` or
holding a path separator is a user's file. A malformed file is refused with one line per error,
each naming the file, the field and the fix.
"""

from __future__ import annotations

import bisect
import enum
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from archcost.errors import ProfileError
from archcost.hardware.reader import read_yaml, suggest

__all__ = ["AttentionKernel", "Fusion", "OptimizerKernel", "SelectiveRecompute",
           "ReduceDtype", "Fp8Recipe", "Fp8", "RuntimeProfile", "DEFAULT_RUNTIME",
           "load_runtime", "list_runtimes", "RUNTIME_FIELDS"]

# the default: the model as written, run by PyTorch eager -- what `archcost validate` runs
DEFAULT_RUNTIME = "eager"


class AttentionKernel(str, enum.Enum):
    """Kernels that run scaled_dot_product_attention (a GPU profile may rate each)."""

    FLASH2 = "flash2"  # FlashAttention-2 (PyTorch's built-in flash backend, flash-attn 2)
    FLASH3 = "flash3"  # FlashAttention-3 (Hopper)
    CUDNN = "cudnn"  # cuDNN fused attention (Transformer Engine's FusedAttention)
    FLASH4 = "flash4"  # FlashAttention-4 (Blackwell)
    EFFICIENT = "efficient"  # PyTorch's memory-efficient (xformers-derived) backend
    MATH = "math"  # the unfused reference (explicit matmuls and softmax)


class Fusion(str, enum.Enum):
    """Families of memory-bound ops a stack runs as one kernel (``cost.fusion``)."""

    DROPOUT = "dropout"  # one dropout kernel (CUDA's native_dropout)
    RESIDUAL = "residual"  # dropout and residual add (bias-dropout-add)
    SOFTMAX = "softmax"  # scale, mask and softmax on the score matrix
    NORM = "norm"  # a normalization written as ops (RMSNorm)
    ACTIVATION = "activation"  # an activation and its pointwise neighbours (bias-GeLU, SwiGLU)
    ROPE = "rope"  # rotary embedding and layout copies inside attention
    ELEMENTWISE = "elementwise"  # every chain inside the blocks (torch.compile per block)
    DEQUANT = "dequant"  # a packed weight's unpack/scale chain inside its GEMM (weight-only)
    KV_CACHE = "kv-cache"  # the KV cache's read casts inside the attention kernel
    # as kv-cache, each query head reading its KV head's cache itself (generation kernels that
    # do not share a KV head's loads across its group of query heads)
    KV_CACHE_PER_HEAD = "kv-cache-per-head"
    # as kv-cache-per-head, except a group of 8 query heads per KV head of head dim 128, which
    # a generation kernel serves reading each KV head once (TensorRT-LLM's first XQA kernels)
    KV_CACHE_PER_HEAD_XQA8 = "kv-cache-per-head-xqa8"
    # the query, key and value projections of an attention module as one GEMM (one weight of
    # their widths side by side), its input read once
    QKV = "qkv"
    # the attention mask (causal, a sliding window, padding) applied inside the attention
    # kernel from the sequences' lengths and positions: the ops that build a mask tensor only
    # attention reads run nowhere, and the kernel reads no mask
    MASK = "mask"
    # an attention written out as ops (the scores' batched matmul, scale, mask, softmax, the
    # values' batched matmul: eager attention, SDPA's math path) run as one attention kernel
    ATTENTION = "attention"
    # a generation step's attention over a latent cache that one projection expands per head
    # (multi-head latent attention) runs on the latent: the query absorbed through the
    # projection's key part, one attention over the cached latent shared by every head, its
    # output through the projection's value part
    MLA = "mla"


class OptimizerKernel(str, enum.Enum):
    PER_TENSOR = "per-tensor"  # one kernel per op and parameter (foreach=False)
    FOREACH = "foreach"  # one multi-tensor kernel per op over all parameters
    FUSED = "fused"  # one kernel per parameter group reading and writing each state once


class SelectiveRecompute(str, enum.Enum):
    """What recompute=selective means in the stack."""

    ATTENTION_CORE = "attention-core"  # Megatron-LM: the attention core is recomputed
    OP_SAC = "op-sac"  # torchtitan: matmul (all but every second) and attention outputs saved
    # Megatron-Core --recompute-modules mla_up_proj: multi-latent attention's up-projections
    # and what follows them up to the attention kernel are recomputed, the rest kept
    MLA_UP_PROJ = "mla-up-proj"


class ReduceDtype(str, enum.Enum):
    GRADIENT = "gradient"  # the gradients' own dtype (the precision policy's)
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class Fp8Recipe(str, enum.Enum):
    DELAYED = "delayed"  # per-tensor scale from an amax history (TE DelayedScaling)
    CURRENT = "current"  # per-tensor scale from this step's amax (TE Float8CurrentScaling,
    #                      torchao tensorwise dynamic)
    ROWWISE = "rowwise"
    BLOCKWISE = "blockwise"  # 1x128 activations, 128x128 weights (DeepSeek-V3)
    MXFP8 = "mxfp8"
    NVFP4 = "nvfp4"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fp8:
    """The stack's FP8 recipe: read and shown; priced once FP8 steps are traced."""

    recipe: Fp8Recipe
    weight_all_gather: bool  # data-parallel weight all-gathers in FP8


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeProfile:
    name: str
    description: str
    # kernels in order of preference: the first one the GPU profile rates runs attention
    attention_kernel: tuple[AttentionKernel, ...]
    fusions: frozenset[Fusion]
    optimizer: OptimizerKernel
    selective_recompute: SelectiveRecompute
    gradient_reduce_dtype: ReduceDtype
    # ZeRO stages (0-3) at which data-parallel gradient reduction overlaps backward and the
    # parameter gather forward; at the others they run after backward (ZeRO-3's per-layer
    # gathers always interleave with compute)
    overlap_dp: frozenset[int]
    # share of each tensor-parallel collective left exposed (1: none hidden)
    tp_comm_exposed: float
    # SMs the overlapped tensor-parallel communication kernels hold while the layer's matmuls
    # run (0: no overlap); the matmuls run on the rest of the GPU's SMs
    tp_comm_sms: int
    # how much slower compute runs while an overlapped data-parallel collective (DDP's
    # all-reduce, ZeRO's reduce-scatter and all-gather, FSDP's prefetch) runs beside it: the
    # collective's kernels take SMs and memory bandwidth from it (0: no interference)
    overlap_slowdown: float = 0.0
    # reserved by the caching allocator over the live tensors' peak, as a share of it;
    # None: not known for the stack (reserved memory is then not predicted)
    allocator_headroom: float | None = None
    fp8: Fp8 | None = None
    # plans the stack cannot run, as plan constraints (archcost plan --constraint): what a
    # search on this runtime keeps to
    plan_constraints: tuple[str, ...] = ()
    # the model's forward runs as eager Python, each nn.Module call and each view op
    # dispatched by the host one by one (inference pricing charges them where the hardware
    # profile measured what they cost); False: a compiled engine runs the graph
    python_dispatch: bool = False
    # row-parallel outputs added together before any other use (a MoE layer's routed and
    # shared experts) are summed as partial sums and all-reduced once (serving engines);
    # False: each row-parallel projection all-reduces its own output (Megatron-Core)
    tp_sum_partials: bool = False
    # continuous batching on this stack runs each iteration's decodes and prompt chunks in one
    # forward (the serving engine's in-flight batching: ``infer --chunked-prefill``'s default
    # here); False: a prefill and the decode steps apart (``--no-chunked-prefill``'s)
    inflight_batching: bool = False
    # decode steps (iterations without prompt tokens) replay a captured CUDA graph: each kernel
    # costs the GPU's in-graph launch (``GpuProfile.in_cuda_graph``), no host time per op;
    # False: every step launches its kernels as ``kernel_launch`` says
    cuda_graphs: bool = False
    # with cuda_graphs: the batch sizes captured, in increasing order; a step pads its batch to
    # the next one (dummy sequences of one token: TensorRT-LLM's ``enable_padding``) and a
    # batch past the last runs without a graph; (): a graph at every batch size, no padding
    graph_batch_sizes: tuple[int, ...] = ()
    source_path: str = ""

    def graph_batch(self, batch: int, most: int | None = None) -> int | None:
        """The batch a decode step of ``batch`` sequences replays its CUDA graph at (padded to
        the next captured size), or None where it runs without one. ``most``: the engine's
        largest graph batch (its max batch size within its token budget): the sizes past it
        are dropped and, where the list went past it, padding goes to it (TensorRT-LLM's
        ``_filter_cuda_graph_batch_sizes``)."""
        if not self.cuda_graphs or (most is not None and batch > most):
            return None
        sizes = self.graph_batch_sizes
        if not sizes:
            return batch
        if most is not None:
            kept = tuple(x for x in sizes if x <= most)
            sizes = kept + (most,) if len(kept) < len(sizes) and most not in kept else kept
        i = bisect.bisect_left(sizes, batch)
        return sizes[i] if i < len(sizes) else None

    def reduce_itemsize(self, grad_itemsize: float) -> float:
        """Bytes per element of a gradient reduction, given the gradients' own."""
        return {ReduceDtype.GRADIENT: grad_itemsize, ReduceDtype.FP32: 4.0,
                ReduceDtype.BF16: 2.0, ReduceDtype.FP16: 2.0}[self.gradient_reduce_dtype]

    def traced_optimizer(self, optimizer: str) -> str:
        """The optimizer variant to trace: Adam(W) as one fused kernel where this stack fuses
        it (an explicit ``-fused`` choice stays)."""
        if self.optimizer is OptimizerKernel.FUSED and optimizer in ("adam", "adamw"):
            return optimizer + "-fused"
        return optimizer

    def summary(self) -> dict[str, Any]:
        """The profile as it enters a document: plain values."""
        return {
            "name": self.name, "attention_kernel": [k.value for k in self.attention_kernel],
            "fusions": sorted(f.value for f in self.fusions), "optimizer": self.optimizer.value,
            "selective_recompute": self.selective_recompute.value,
            "gradient_reduce_dtype": self.gradient_reduce_dtype.value,
            "overlap_dp": sorted(self.overlap_dp), "tp_comm_exposed": self.tp_comm_exposed,
            "tp_comm_sms": self.tp_comm_sms, "overlap_slowdown": self.overlap_slowdown,
            "allocator_headroom": self.allocator_headroom,
            "fp8": None if self.fp8 is None else {"recipe": self.fp8.recipe.value,
                                                  "weight_all_gather": self.fp8.weight_all_gather},
            "plan_constraints": list(self.plan_constraints),
        }


# field -> (kind, example); kinds are checked by _Check
RUNTIME_FIELDS: dict[str, tuple[Any, str]] = {
    "name": ("text", "torchtitan"),
    "description": ("text", "'torchtitan FSDP2 eager (9dec370)'"),
    "attention_kernel": (AttentionKernel, "[cudnn, flash2]"),
    "fusions": ("fusions", "[dropout, softmax, norm]"),
    "optimizer": (OptimizerKernel, "foreach"),
    "selective_recompute": (SelectiveRecompute, "op-sac"),
    "gradient_reduce_dtype": (ReduceDtype, "fp32"),
    "overlap_dp": ("stages", "[0, 1, 2, 3]"),
    "tp_comm_exposed": ("fraction", "0.25"),
    "tp_comm_sms": ("sms", "16"),
    "overlap_slowdown": ("fraction", "0.189"),
    "allocator_headroom": ("share", "0.05"),
    "fp8": ("fp8", "{recipe: current, weight_all_gather: true}"),
    "plan_constraints": ("constraints", "['cp=1', 'zero=0']"),
    "python_dispatch": ("bool", "true"),
    "tp_sum_partials": ("bool", "true"),
    "inflight_batching": ("bool", "true"),
    "cuda_graphs": ("bool", "true"),
    "graph_batch_sizes": ("sizes", "[1, 2, 4, 8, 16, 32, 64, 128, 256]"),
}
_OPTIONAL = {"fp8", "allocator_headroom", "plan_constraints", "python_dispatch",
             "overlap_slowdown", "tp_sum_partials", "inflight_batching", "cuda_graphs",
             "graph_batch_sizes"}
# a plan constraint as `archcost plan --constraint` writes it (archcost.plan.arrays checks the key)
_CONSTRAINT = re.compile(r"^\s*[A-Za-z_]+\s*(<=|>=|==|!=|=|<|>)\s*[A-Za-z0-9_\-]+\s*$")
_FP8_FIELDS = {"recipe": (Fp8Recipe, "current"), "weight_all_gather": ("bool", "true")}


class _Check:
    """Collects every error of one file, each one line naming the file, the field, the fix."""

    def __init__(self, path: Path):
        self.file = path.name
        self.errors: list[str] = []

    def fail(self, fld: str, msg: str) -> None:
        self.errors.append(f"{self.file}: field '{fld}': {msg}")

    def keys(self, data: dict, known: dict, optional: set, where: str = "") -> None:
        for key in data:
            if key not in known:
                hint = suggest(str(key), list(known)) or f"known fields: {', '.join(known)}"
                self.fail(where + str(key), f"unknown field; {hint.strip()}")
        for key, (_, shown) in known.items():
            if key not in data and key not in optional:
                self.fail(where + key, f"missing; add it, e.g. {key}: {shown}")

    def value(self, data: dict, key: str, kind: Any, shown: str, where: str = "") -> Any:
        if key not in data:
            return None
        v = data[key]
        fld = where + key
        if kind == "text":
            if isinstance(v, str) and v.strip():
                return v
            self.fail(fld, f"{v!r} must be a non-empty text, e.g. {shown}")
        elif kind == "bool":
            if isinstance(v, bool):
                return v
            self.fail(fld, f"{v!r} must be true or false")
        elif kind in ("fraction", "share"):
            ok = not isinstance(v, bool) and isinstance(v, (int, float))
            if ok and (0 <= v <= 1 if kind == "fraction" else 0 <= v < 10):
                return float(v)
            bound = "in [0, 1]" if kind == "fraction" else ">= 0 (a share: 0.05 is 5 %)"
            self.fail(fld, f"{v!r} must be a number {bound}, e.g. {shown}")
        elif kind == "constraints":
            if isinstance(v, list) and all(isinstance(x, str) and _CONSTRAINT.match(x)
                                           for x in v):
                return tuple(v)
            self.fail(fld, f"{v!r} must be a list of plan constraints (key, operator, value), "
                      f"e.g. {shown}")
        elif kind == "sms":
            if not isinstance(v, bool) and isinstance(v, int) and v >= 0:
                return v
            self.fail(fld, f"{v!r} must be a whole number of SMs >= 0, e.g. {shown}; 0 when "
                      "tensor-parallel communication does not overlap the matmuls")
        elif kind == "sizes":
            if isinstance(v, list) and v and all(
                    not isinstance(x, bool) and isinstance(x, int) and x >= 1 for x in v) \
                    and all(a < b for a, b in zip(v, v[1:])):
                return tuple(v)
            self.fail(fld, f"{v!r} must be a list of batch sizes >= 1 in increasing order, "
                      f"e.g. {shown}")
        elif kind == "stages":
            if isinstance(v, list) and all(
                    not isinstance(x, bool) and isinstance(x, int) and 0 <= x <= 3 for x in v):
                return frozenset(v)
            self.fail(fld, f"{v!r} must be a list of ZeRO stages (0 to 3), e.g. {shown}; [] "
                      "when nothing overlaps")
        elif kind == "fusions":
            if isinstance(v, list):
                got = [self.choice(fld, x, Fusion) for x in v]
                return None if None in got else frozenset(got)
            self.fail(fld, f"{v!r} must be a list of fused families, e.g. {shown}; [] when "
                      "every op is its own kernel")
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            return self.choice(fld, v, kind)
        return None

    def choice(self, fld: str, v: Any, kind: type[enum.Enum]) -> Any:
        names = [m.value for m in kind]
        try:
            return kind(v)
        except ValueError:
            hint = suggest(str(v), names)
            self.fail(fld, f"{v!r} is unknown; {hint}use one of {', '.join(names)}")
            return None


def _attention(c: _Check, raw: Any) -> tuple[AttentionKernel, ...] | None:
    items = raw if isinstance(raw, list) else [raw]
    if not items or any(not isinstance(x, str) for x in items):
        c.fail("attention_kernel", f"{raw!r} must be a kernel name or a list of them in order of "
               f"preference, e.g. {RUNTIME_FIELDS['attention_kernel'][1]}")
        return None
    kernels = [c.choice("attention_kernel", x, AttentionKernel) for x in items]
    return None if None in kernels else tuple(kernels)


def _fp8(c: _Check, raw: Any) -> Fp8 | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        c.fail("fp8", f"must be a mapping, e.g. {RUNTIME_FIELDS['fp8'][1]}, or null when the "
               "stack trains without FP8")
        return None
    c.keys(raw, _FP8_FIELDS, set(), "fp8.")
    got = {k: c.value(raw, k, kind, shown, "fp8.") for k, (kind, shown) in _FP8_FIELDS.items()}
    if None in got.values():
        return None
    return Fp8(recipe=got["recipe"], weight_all_gather=got["weight_all_gather"])


def runtime_from_dict(data: dict[str, Any], path: str | Path) -> RuntimeProfile:
    """A RuntimeProfile from parsed YAML; every error of the file in one ProfileError, one
    line each."""
    path = Path(path)
    c = _Check(path)
    c.keys(data, RUNTIME_FIELDS, _OPTIONAL)
    got = {key: c.value(data, key, kind, shown) for key, (kind, shown) in RUNTIME_FIELDS.items()
           if key not in ("attention_kernel", "fp8")}
    kernels = _attention(c, data["attention_kernel"]) if "attention_kernel" in data else None
    fp8 = _fp8(c, data.get("fp8"))
    if c.errors:
        raise ProfileError("\n".join(c.errors))
    got["plan_constraints"] = got["plan_constraints"] or ()
    got["python_dispatch"] = bool(got["python_dispatch"])
    got["tp_sum_partials"] = bool(got["tp_sum_partials"])
    got["inflight_batching"] = bool(got["inflight_batching"])
    got["cuda_graphs"] = bool(got["cuda_graphs"])
    got["graph_batch_sizes"] = got["graph_batch_sizes"] or ()
    if got["graph_batch_sizes"] and not got["cuda_graphs"]:
        raise ProfileError(f"{path.name}: field 'graph_batch_sizes': the batch sizes CUDA "
                           "graphs are captured at, without cuda_graphs: true; add cuda_graphs: "
                           "true or drop graph_batch_sizes")
    got["overlap_slowdown"] = got["overlap_slowdown"] or 0.0
    return RuntimeProfile(**got, attention_kernel=kernels, fp8=fp8, source_path=str(path))


# --- finding files -------------------------------------------------------------------------------
def _bundled():
    return resources.files("archcost.runtime_profiles")


def list_runtimes() -> list[str]:
    """Names of the bundled runtime profiles."""
    return sorted(p.name[: -len(".yaml")] for p in _bundled().iterdir()
                  if p.name.endswith(".yaml"))


def load_runtime(name_or_path: str | None = None) -> RuntimeProfile:
    """A bundled runtime profile by name (default: ``DEFAULT_RUNTIME``), or a user's file."""
    text = str(name_or_path or DEFAULT_RUNTIME)
    names = list_runtimes()
    if text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ProfileError(f"{text}: no such runtime profile file; check the path, or use a "
                               f"bundled runtime: {', '.join(names)}")
    else:
        res = _bundled().joinpath(f"{text}.yaml")
        if not res.is_file():
            raise ProfileError(f"no runtime profile named '{text}'; {suggest(text, names)}"
                               f"bundled: {', '.join(names)} (or give a path to a .yaml file)")
        path = Path(str(res))
    data = read_yaml(path)
    if "peak_flops" in data or "levels" in data:
        raise ProfileError(f"{path.name}: this is a hardware profile; give it to --hardware or "
                           "--cluster, and a runtime profile to --runtime")
    return runtime_from_dict(data, path)
