"""Precision policies: which dtype weights, activations, gradients and optimizer states use.

Mixed precision keeps fp32 master weights and Adam states beside 16-bit compute weights; the
16 bytes/param of Rajbhandari et al. 2020 (ZeRO, Section 3.1) are 2 (weights) + 2 (grads) +
12 (fp32 master, momentum, variance). With ``fp32_grads`` (Megatron's main-grad buffer) grads are
4 bytes and the total 18.

Low precision (``fp8``, ``mxfp8``, ``nvfp4``) is bf16-mixed training whose linear layers run
their three GEMMs (forward, dgrad, wgrad) in a narrower format, as Transformer Engine and
torchao train: master weights, optimizer states, gradients, attention and the LM head are as
in bf16-mixed; the casts, amax reductions and scaling state the format needs are traced ops
(``archcost.trace.lowp_linear``). How each format scales:

- ``fp8`` with ``fp8_recipe``: ``tensorwise`` (per-tensor current scaling: an amax pass over
  the tensor, then the cast; torchao's default ``Float8LinearConfig()``, torchtitan's float8,
  Transformer Engine's ``Float8CurrentScaling``, Megatron-Bridge's ``fp8_cs``), ``delayed``
  (Transformer Engine's ``DelayedScaling``: the scale comes from an amax history of the past
  steps, 1024 long, the cast records the current amax, one history update per pass; its
  library default on Hopper and NeMo 24.07's recipe), ``rowwise`` (torchao's rowwise recipe:
  one fp32 scale per row, each operand cast along the dimension its GEMM contracts). ``hybrid``
  formats: E4M3 for inputs and weights, E5M2 for gradients (Transformer Engine
  ``Format.HYBRID``, torchao's default ``grad_output`` dtype); rowwise casts every tensor to E4M3
  (torchao's rowwise recipe). Default ``tensorwise``: the recipe of torchao/torchtitan and of
  Megatron-Bridge's FP8 performance configurations.
- ``mxfp8``: OCP MX, E4M3 elements with one E8M0 (power-of-two) scale per 32 consecutive
  elements; the row and column quantizations are separate casts from bf16 (Transformer Engine
  ``MXFP8BlockScaling``). Blackwell only.
- ``nvfp4``: E2M1 elements (two per byte) with one E4M3 scale per 16 elements and an fp32
  per-tensor scale from the tensor's amax (Transformer Engine ``NVFP4BlockScaling``). Blackwell.

Sources: NVIDIA/TransformerEngine @000b637 ``transformer_engine/common/recipe/__init__.py``
(recipes, formats, amax_history_len 1024, algo max); @001597e
``transformer_engine/pytorch/quantization.py`` (``get_default_fp8_recipe``: MXFP8 where
supported, else DelayedScaling on Hopper); pytorch/ao @0598012
``torchao/testing/training/roofline_utils.py`` (the cast kernels of each recipe).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from archcost.errors import ConfigError

__all__ = ["Precision", "Fp8Recipe", "LowPrecisionFormat", "PrecisionPolicy", "parse_precision",
           "DEFAULT_FP8_RECIPE", "LOW_PRECISION_PEAKS"]

# bytes per element of each dtype a parameter or buffer holds (torch.dtype.itemsize); integer
# and bool buffers (position ids, index tables, BatchNorm's num_batches_tracked) included
ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8, "int64": 8, "int32": 4,
            "int16": 2, "int8": 1, "uint8": 1, "bool": 1, "complex64": 8}


class Precision(str, enum.Enum):
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    BF16_MIXED = "bf16-mixed"
    FP16_MIXED = "fp16-mixed"
    FP8 = "fp8"
    MXFP8 = "mxfp8"
    NVFP4 = "nvfp4"


class Fp8Recipe(str, enum.Enum):
    """How ``--dtype fp8`` scales its tensors."""

    TENSORWISE = "tensorwise"  # per-tensor current scaling: amax pass, then the cast
    DELAYED = "delayed"  # per-tensor scale from the amax history of past steps
    ROWWISE = "rowwise"  # one scale per row, each operand cast along its contraction


DEFAULT_FP8_RECIPE = Fp8Recipe.TENSORWISE
_LOW = (Precision.FP8, Precision.MXFP8, Precision.NVFP4)
# the peak_flops key each low precision's GEMMs run at
LOW_PRECISION_PEAKS = {Precision.FP8: "fp8", Precision.MXFP8: "mxfp8", Precision.NVFP4: "nvfp4"}


@dataclass(frozen=True, slots=True)
class LowPrecisionFormat:
    """The element and scale formats of a low-precision policy's GEMM operands."""

    name: str  # fp8-tensorwise, fp8-delayed, fp8-rowwise, mxfp8, nvfp4
    peak_key: str  # peak_flops_per_s key of its GEMMs
    fwd_dtype: str  # torch dtype name of inputs and weights
    grad_dtype: str  # torch dtype name of output gradients
    block: int  # elements per scale along the contraction: 0 per tensor, -1 per row
    scale_dtype: str  # torch dtype name of the scales
    amax_pass: bool  # an amax reduction over the tensor before its cast (current scaling)
    delayed: bool  # scale from the amax history; the cast records the current amax
    element_bits: int  # 8, or 4 (two elements per byte)

    @property
    def param_bytes(self) -> float:
        """Bytes per weight element in this format, block scales included (what an all-gather
        of low-precision parameters moves; per-tensor and per-row scales are negligible)."""
        scale = ITEMSIZE.get(self.scale_dtype, 1) / self.block if self.block > 0 else 0.0
        return self.element_bits / 8 + scale


_FORMATS = {
    "fp8-tensorwise": LowPrecisionFormat("fp8-tensorwise", "fp8", "float8_e4m3fn", "float8_e5m2",
                                         0, "float32", True, False, 8),
    "fp8-delayed": LowPrecisionFormat("fp8-delayed", "fp8", "float8_e4m3fn", "float8_e5m2", 0,
                                      "float32", False, True, 8),
    "fp8-rowwise": LowPrecisionFormat("fp8-rowwise", "fp8", "float8_e4m3fn", "float8_e4m3fn", -1,
                                      "float32", False, False, 8),
    "mxfp8": LowPrecisionFormat("mxfp8", "mxfp8", "float8_e4m3fn", "float8_e4m3fn", 32,
                                "float8_e8m0fnu", False, False, 8),
    "nvfp4": LowPrecisionFormat("nvfp4", "nvfp4", "float4_e2m1fn_x2", "float4_e2m1fn_x2", 16,
                                "float8_e4m3fn", True, False, 4),
}


@dataclass(frozen=True, slots=True)
class PrecisionPolicy:
    precision: Precision
    fp32_grads: bool = False
    fp8_recipe: Fp8Recipe | None = None  # set for Precision.FP8 only
    # low precision: the weights' fp8 copies (and their transposes) are cast once per step,
    # after the optimizer updates the weights, and kept for every micro-batch (Transformer
    # Engine); False: each forward casts its weights again (torchao)
    fp8_weight_cache: bool = True

    @property
    def compute_dtype(self) -> str:
        """torch dtype name of weights and activations during forward/backward."""
        return {
            Precision.FP32: "float32",
            Precision.BF16: "bfloat16",
            Precision.BF16_MIXED: "bfloat16",
            Precision.FP16: "float16",
            Precision.FP16_MIXED: "float16",
        }.get(self.precision, "bfloat16")

    @property
    def low_precision(self) -> LowPrecisionFormat | None:
        """The GEMM format of the linear layers, None outside fp8/mxfp8/nvfp4."""
        if self.precision is Precision.FP8:
            return _FORMATS[f"fp8-{(self.fp8_recipe or DEFAULT_FP8_RECIPE).value}"]
        if self.precision in _LOW:
            return _FORMATS[self.precision.value]
        return None

    @property
    def gemm_dtype(self) -> str:
        """What the model's GEMMs run in: a ``compute.PEAK_KEY`` key (its peak prices MFU)."""
        low = self.low_precision
        if low is None:
            return self.compute_dtype
        return low.fwd_dtype if low.peak_key == "fp8" else low.peak_key

    @property
    def mixed(self) -> bool:
        return self.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED, *_LOW)

    @property
    def grad_dtype(self) -> str:
        return "float32" if (self.fp32_grads and self.mixed) else self.compute_dtype

    @property
    def master_dtype(self) -> str | None:
        """dtype of master weights kept by the optimizer, None when there are none."""
        return "float32" if self.mixed else None

    @property
    def label(self) -> str:
        """The precision as shown: ``fp8`` carries its recipe (``fp8-delayed``)."""
        low = self.low_precision
        return low.name if low is not None else self.precision.value


def parse_precision(text: str, fp32_grads: bool = False, fp8_recipe: str | None = None,
                    fp8_weight_cache: bool = True) -> PrecisionPolicy:
    try:
        prec = Precision(text.lower())
    except ValueError:
        names = ", ".join(p.value for p in Precision)
        raise ConfigError(f"--dtype {text!r} is not a precision; use one of {names}") from None
    if fp32_grads and prec not in (Precision.BF16_MIXED, Precision.FP16_MIXED, *_LOW):
        raise ConfigError("--fp32-grads needs a mixed precision; use --dtype bf16-mixed")
    recipe = None
    if fp8_recipe is not None:
        try:
            recipe = Fp8Recipe(fp8_recipe.lower())
        except ValueError:
            names = ", ".join(r.value for r in Fp8Recipe)
            raise ConfigError(f"--fp8-recipe {fp8_recipe!r} is not a recipe; use one of "
                              f"{names}") from None
        if prec is not Precision.FP8:
            raise ConfigError(f"--fp8-recipe {recipe.value} applies to --dtype fp8, not "
                              f"{prec.value}; drop it or use --dtype fp8")
    if prec is Precision.FP8 and recipe is None:
        recipe = DEFAULT_FP8_RECIPE
    return PrecisionPolicy(prec, fp32_grads, recipe, fp8_weight_cache)
