"""Precision policies: which dtype weights, activations, gradients and optimizer states use.

Mixed precision keeps fp32 master weights and Adam states beside 16-bit compute weights; the
16 bytes/param of Rajbhandari et al. 2020 (ZeRO, Section 3.1) are 2 (weights) + 2 (grads) +
12 (fp32 master, momentum, variance). With ``fp32_grads`` (Megatron's main-grad buffer) grads are
4 bytes and the total 18.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from archcost.errors import ConfigError

__all__ = ["Precision", "PrecisionPolicy", "parse_precision"]

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


@dataclass(frozen=True, slots=True)
class PrecisionPolicy:
    precision: Precision
    fp32_grads: bool = False

    @property
    def compute_dtype(self) -> str:
        """torch dtype name of weights and activations during forward/backward."""
        return {
            Precision.FP32: "float32",
            Precision.BF16: "bfloat16",
            Precision.BF16_MIXED: "bfloat16",
            Precision.FP16: "float16",
            Precision.FP16_MIXED: "float16",
        }[self.precision]

    @property
    def mixed(self) -> bool:
        return self.precision in (Precision.BF16_MIXED, Precision.FP16_MIXED)

    @property
    def grad_dtype(self) -> str:
        return "float32" if (self.fp32_grads and self.mixed) else self.compute_dtype

    @property
    def master_dtype(self) -> str | None:
        """dtype of master weights kept by the optimizer, None when there are none."""
        return "float32" if self.mixed else None


def parse_precision(text: str, fp32_grads: bool = False) -> PrecisionPolicy:
    try:
        prec = Precision(text.lower())
    except ValueError:
        names = ", ".join(p.value for p in Precision)
        raise ConfigError(f"--dtype {text!r} is not a precision; use one of {names}") from None
    if fp32_grads and prec not in (Precision.BF16_MIXED, Precision.FP16_MIXED):
        raise ConfigError("--fp32-grads needs a mixed precision; use --dtype bf16-mixed")
    return PrecisionPolicy(prec, fp32_grads)
