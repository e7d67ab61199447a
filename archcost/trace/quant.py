"""Inference weight compression: weight-only int8/int4, fp8 weights and activations, 2:4 sparsity.

``quantize_linears`` replaces the ``nn.Linear`` layers of a model's layers (its repeated
blocks and any other child of their container of a block's class: DeepSeek-V2-Lite's dense
first layer) by modules that hold their weight packed, as TensorRT-LLM stores it, and
whose forward runs the real aten ops that turn the packed weight into the GEMM's operand. The
LM head and the other linears outside the blocks stay in the compute dtype: TensorRT-LLM's
ModelOpt path disables the ``*lm_head*`` quantizers (NVIDIA/TensorRT-LLM@042c510d33e3ba07ac0e3d1ef810b82198b90e0c
``tensorrt_llm/quantization/quantize_by_modelopt.py`` ``EMPTY_CFG``, the base of int8_wo/int4_wo).

Storage per linear y = x W^T (W: N x K, n = N*K elements; "compute" = the compute dtype):

| scheme | weight | scales |
|---|---|---|
| ``int4`` (W4A16) | int8, two 4-bit values per byte: n/2 bytes | n/group_size, compute dtype |
| ``int8`` (W8A16) | int8: n bytes | n/group_size (per channel: N), compute dtype |
| ``fp8`` (W8A8) | float8_e4m3fn: n bytes | one fp32 for the weight, one for the input |
| ``none`` + 2:4 | compute dtype, kept half: n/2 values | -- |

Sources, NVIDIA/TensorRT-LLM@027cd518e3b63809a5c5799187991e7f1164fb12
``tensorrt_llm/quantization/layers.py``: ``WeightOnlyQuantLinear`` (int8/int4 packed into
32-bit words, ``per_channel_scale`` of shape (out,) in the model dtype),
``WeightOnlyGroupwiseQuantLinear`` (int4 packed eight per 32 bits, ``scale`` of shape
(in/group_size, out) in the model dtype, ``zero`` off by default, ``group_size=128``),
``FP8Linear`` (``weights_scaling_factor`` and ``activation_scaling_factor``, each one fp32
value: per-tensor, static). Quantization is symmetric: no zero points (TRT-LLM's
``zero=False``; GPTQ checkpoints with zero points would add a scales-sized tensor).
``docs/source/reference/precision.md`` (@1020a8d799d04a1776f8eec19496ecafa2558506): weight-only
"dequantizing those weights on-the-fly in linear layers", dequantization ``q * s``.

2:4 sparsity (two of every four consecutive weights along K kept) stores the kept values and,
per kept value, its 2-bit position in its group of four (NVIDIA A100 Tensor Core Architecture
whitepaper, 2020, "Fine-Grained Structured Sparsity": compressed values plus 2-bit metadata
indices; cuSPARSELt's compressed format): n/2 values + n/8 bytes of metadata. Sparse GEMMs
run at the GPU's sparse peak (``archcost.hardware.sparsity``). Sparsity applies to ``none``
(bf16/fp16) and ``fp8`` weights, the formats cuSPARSELt multiplies sparse; the int4/int8
weight-only GEMMs of TRT-LLM are dense.

Forward, on real or fake tensors (what the capture records; each op is real aten):
- int4: ``bitwise_left_shift`` by (4, 0) and ``bitwise_right_shift`` by 4 sign-extend the low
  and high nibble of each byte (the packed bytes read once), ``_to_copy`` converts to the compute dtype, ``mul`` by the group
  scales, ``linear`` (``t`` + ``mm``) with the activations;
- int8: ``_to_copy``, ``mul``, ``linear``;
- fp8: the input divided by its scale, clamped to +-448 and converted to E4M3 (TRT-LLM's
  ``quantize``), ``_scaled_mm`` with both per-tensor scales and the bias, output in the compute
  dtype;
- 2:4: the metadata unpacked by shifts and ``bitwise_and``, the kept values ``scatter``-ed into
  a zero weight before the GEMM.
A runtime that fuses ``dequant`` (``cost.fusion``) runs the weight's chain inside the GEMM
kernel, which then reads the packed bytes only (TRT-LLM's weight-only GEMM plugins).

Stacked expert weights ((E, N, K) parameters a mixture-of-experts layer multiplies with a
grouped GEMM, as transformers' experts hold ``gate_up_proj`` and ``down_proj``) are packed the
same way, each expert's matrix as a linear's (fp8: one scale per expert); the module reads
them through properties that unpack them as ops (``_pack_experts``), which a ``dequant``
runtime runs inside the grouped GEMM, reading the packed bytes of the experts it reaches.

NB: the quantized values come from the weight at hand with plain round-to-nearest scaling
(max / qmax per group): no AWQ/GPTQ calibration, no AWQ pre-quant activation scale (one
value per input channel). The fp8 input scale is 1.0 where no calibration gives one (vLLM's
default without calibration). The packed layout is (N, K/2) bytes, not TRT-LLM's interleaved
(K, N/2): the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from archcost.errors import ConfigError

__all__ = ["WeightQuant", "QuantState", "parse_weight_quant", "quantize_linears", "SCHEMES",
           "STACKED_SUFFIX", "FP8_MAX", "pack_int4", "unpack_int4", "prune_2_4", "pack_meta", "unpack_meta"]

SCHEMES = ("int8", "int4", "fp8")
SPARSITIES = ("2:4",)
FP8_MAX = 448.0  # largest finite float8_e4m3fn
_QMAX = {"int8": 127, "int4": 7}
_FP8 = torch.float8_e4m3fn


@dataclass(frozen=True)
class WeightQuant:
    """How the blocks' linears store and multiply their weights."""

    scheme: str  # int8 | int4 (weight-only) | fp8 (weights and activations) | none (2:4 only)
    group_size: int = 128  # int4/int8: weights per scale along K; -1: one scale per channel
    sparsity: str | None = None  # "2:4" or None

    def describe(self) -> str:
        what = {"int4": "int4 weight-only", "int8": "int8 weight-only",
                "fp8": "fp8 weights and activations (per-tensor scales)",
                "none": "compute-dtype weights"}[self.scheme]
        if self.scheme in _QMAX:
            what += (", per-channel scales" if self.group_size == -1
                     else f", group size {self.group_size}")
        return what + (f", {self.sparsity} sparse" if self.sparsity else "")


def parse_weight_quant(text: str | None, group_size: int = 128, sparsity: str | None = None
                       ) -> WeightQuant | None:
    """The weight compression a user asks for (None: none); one-line ConfigError otherwise."""
    if sparsity is not None and sparsity not in SPARSITIES:
        raise ConfigError(f"sparsity {sparsity!r} is unknown; use 2:4 (two of every four "
                          "weights kept) or leave it out")
    if text is None or str(text).strip().lower() in ("", "none"):
        return WeightQuant("none", sparsity=sparsity) if sparsity else None
    scheme = str(text).strip().lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"weight quantization {text!r} is unknown; use one of "
                          f"{', '.join(SCHEMES)}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or not (
            group_size == -1 or (group_size > 0 and group_size % 2 == 0)):
        raise ConfigError(f"weight group size {group_size!r} must be a positive even number of "
                          "weights (TensorRT-LLM uses 64 or 128) or -1 for one scale per channel")
    if sparsity and scheme in _QMAX:
        raise ConfigError(f"2:4 sparsity with {scheme} weight-only is not a kernel TensorRT-LLM "
                          "or cuSPARSELt runs; use it with fp8 or without weight quantization")
    return WeightQuant(scheme, group_size, sparsity)


# --- packing: pure functions of tensors ------------------------------------------------------------
def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """(N, K) int8 values in [-8, 7] -> (N, K/2) int8, element 2j in the low nibble of byte j."""
    lo = torch.bitwise_and(q[:, 0::2], 0xF)
    hi = torch.bitwise_left_shift(q[:, 1::2], 4)
    return torch.bitwise_or(lo, hi)


def unpack_int4(p: torch.Tensor) -> torch.Tensor:
    """(N, K/2) int8 -> (N, K) int8: one shift left by (4, 0) and one arithmetic shift right by
    4 sign-extend the low and the high nibble of each byte (the packed bytes read once)."""
    shifts = torch.tensor([4, 0], dtype=torch.int8, device=p.device)
    both = torch.bitwise_right_shift(torch.bitwise_left_shift(p.unsqueeze(-1), shifts), 4)
    return both.view(p.shape[0], 2 * p.shape[1])  # (N, K/2, 2) -> (N, K)


def prune_2_4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the two largest-magnitude weights of every four along K: (values (N, K/2),
    positions (N, K/2) in 0..3, ascending within each group)."""
    n, k = w.shape
    groups = w.view(n, k // 4, 4)
    idx = groups.abs().topk(2, dim=-1).indices.sort(dim=-1).values  # (N, K/4, 2)
    return groups.gather(-1, idx).view(n, k // 2), idx.view(n, k // 2).to(torch.uint8)


def pack_meta(idx: torch.Tensor) -> torch.Tensor:
    """(N, K/2) positions in 0..3 -> (N, K/8) uint8, four 2-bit positions per byte."""
    n, half = idx.shape
    parts = idx.view(n, half // 4, 4).to(torch.uint8)
    out = torch.zeros(n, half // 4, dtype=torch.uint8, device=idx.device)
    for j in range(4):
        out = torch.bitwise_or(out, torch.bitwise_left_shift(parts[..., j], 2 * j))
    return out


def unpack_meta(m: torch.Tensor) -> torch.Tensor:
    """(N, K/8) uint8 -> (N, K/2) int64 positions (the metadata read once)."""
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=m.device)
    parts = torch.bitwise_and(torch.bitwise_right_shift(m.unsqueeze(-1), shifts), 3)
    return parts.view(m.shape[0], 4 * m.shape[1]).long()  # (N, K/8, 4) -> (N, K/2)


def _scatter_2_4(values: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    """The dense (N, K) weight of kept ``values`` (N, K/2) at the positions ``meta`` holds."""
    n, half = values.shape
    idx = unpack_meta(meta).view(n, half // 2, 2)
    dense = torch.zeros(n, half // 2, 4, dtype=values.dtype, device=values.device)
    return dense.scatter(-1, idx, values.view(n, half // 2, 2)).view(n, 2 * half)


def _int_quantize(w: torch.Tensor, qmax: int, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric round-to-nearest: (int8 values (N, K), scales (N, K/group) in w's dtype)."""
    n, k = w.shape
    g = w.float().view(n, k // group, group)
    scale = (g.abs().amax(-1) / qmax).to(w.dtype)  # as stored: the forward multiplies by it
    safe = scale.float().clamp(min=torch.finfo(torch.float32).tiny).unsqueeze(-1)
    q = torch.round(g / safe).clamp(-qmax - 1, qmax).to(torch.int8)
    return q.view(n, k), scale


# --- the quantized linears -------------------------------------------------------------------------
class _PackedLinear(nn.Module):
    """Common part: sizes, bias (a parameter in the compute dtype) and packed state."""

    def __init__(self, lin: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = lin.in_features, lin.out_features
        self.bias = lin.bias
        self.dtype = lin.weight.dtype  # the compute dtype the linear was built in
        self.state: dict[str, torch.Tensor] = {}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"

    @property
    def weight(self) -> torch.Tensor:
        """The dense (N, K) weight in the compute dtype, unpacked from the state: model code
        that reads a linear's weight outside its forward (DeepSeek's absorbed attention reads
        ``wkv_b.weight``, as its reference inference dequantizes that weight first) gets the
        unpacking traced as ops."""
        return self.dense(self.dtype)

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError


class WeightOnlyQuantLinear(_PackedLinear):
    """int4/int8 weight-only (W4A16, W8A16) with group or per-channel scales."""

    def __init__(self, lin: nn.Linear, quant: WeightQuant):
        super().__init__(lin)
        w = lin.weight.detach()
        self.scheme = quant.scheme
        self.group = w.shape[1] if quant.group_size == -1 else quant.group_size
        q, scales = _int_quantize(w, _QMAX[quant.scheme], self.group)
        self.state = {"weight": pack_int4(q) if quant.scheme == "int4" else q, "scales": scales}

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        """The (N, K) weight in ``dtype``, from the packed bytes."""
        q = self.state["weight"]
        if self.scheme == "int4":
            q = unpack_int4(q)
        n, k = q.shape
        s = self.state["scales"]  # (N, K/group)
        return (q.to(dtype).view(n, k // self.group, self.group) * s.unsqueeze(-1)).view(n, k)

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        return self.dequantized(dtype)

    def forward(self, x):
        return F.linear(x, self.dequantized(x.dtype), self.bias)


class Fp8QuantLinear(_PackedLinear):
    """fp8 (E4M3) weights and activations, one static fp32 scale each (TRT-LLM FP8Linear)."""

    sparse = False

    def __init__(self, lin: nn.Linear):
        super().__init__(lin)
        sparse = self.sparse
        w = lin.weight.detach()
        if sparse:
            w, idx = prune_2_4(w)
        w_scale = (w.float().abs().amax() / FP8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
        wq = (w.float() / w_scale).clamp(-FP8_MAX, FP8_MAX).to(_FP8)
        self.state = {"weight": wq, "weight_scale": w_scale,
                      "input_scale": torch.ones((), dtype=torch.float32)}
        if sparse:
            self.state["meta"] = pack_meta(idx)

    def weight_operand(self, dtype: torch.dtype) -> torch.Tensor:
        """The (N, K) E4M3 weight the GEMM reads (a 2:4 weight scattered back to dense)."""
        w = self.state["weight"]
        if "meta" not in self.state:
            return w
        return _scatter_2_4(w.to(dtype), self.state["meta"]).to(_FP8)  # E4M3 -> bf16 is exact

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        return (self.weight_operand(dtype).to(dtype) * self.state["weight_scale"]).to(dtype)

    def forward(self, x):
        s_x = self.state["input_scale"]
        x2 = x.reshape(-1, x.shape[-1])  # (M, K)
        xq = (x2 / s_x).clamp(-FP8_MAX, FP8_MAX).to(_FP8)
        w = self.weight_operand(x.dtype)
        y = torch._scaled_mm(xq, w.t(), s_x, self.state["weight_scale"], bias=self.bias,
                             out_dtype=x.dtype)  # (M, N)
        return y.view(*x.shape[:-1], self.out_features)


class SparseFp8QuantLinear(Fp8QuantLinear):
    """fp8 weights and activations with a 2:4 sparse weight."""

    sparse = True


class SparseQuantLinear(_PackedLinear):
    """2:4 sparse weights in the compute dtype: kept values and 2-bit positions."""

    def __init__(self, lin: nn.Linear):
        super().__init__(lin)
        values, idx = prune_2_4(lin.weight.detach())
        self.state = {"weight": values, "meta": pack_meta(idx)}

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        return _scatter_2_4(self.state["weight"].to(dtype), self.state["meta"])

    def forward(self, x):
        return F.linear(x, self.dense(x.dtype), self.bias)


# --- stacked expert weights ---------------------------------------------------------------------
STACKED_SUFFIX = "QuantExperts"  # class-name suffix of a module whose stacked weights are packed


def _pack_stacked(w: torch.Tensor, quant: WeightQuant) -> dict[str, torch.Tensor]:
    """The packed state of a stacked (E, N, K) weight (E experts' y = x W_e^T), each expert's
    matrix as a linear's: int8/int4 values with group scales along K; fp8 with one fp32 scale
    per expert (TensorRT-LLM's MoE fp8 quantizes each expert's weight on its own)."""
    e, n, k = w.shape
    if quant.scheme in _QMAX:
        group = k if quant.group_size == -1 else quant.group_size
        q, scales = _int_quantize(w.reshape(e * n, k), _QMAX[quant.scheme], group)
        q = pack_int4(q) if quant.scheme == "int4" else q
        return {"weight": q.view(e, n, -1), "scales": scales.view(e, n, -1)}
    amax = w.float().abs().amax(dim=(1, 2))
    scale = (amax / FP8_MAX).clamp(min=torch.finfo(torch.float32).tiny)  # (E,)
    wq = (w.float() / scale.view(e, 1, 1)).clamp(-FP8_MAX, FP8_MAX).to(_FP8)
    return {"weight": wq, "weight_scale": scale}


def _unpack_stacked(state: dict[str, torch.Tensor], quant: WeightQuant,
                    dtype: torch.dtype) -> torch.Tensor:
    """The (E, N, K) weight in ``dtype`` from its packed state, as aten ops on the packed bytes
    (a runtime that fuses ``dequant`` runs them inside the grouped GEMM)."""
    w = state["weight"]
    e, n = w.shape[0], w.shape[1]
    if quant.scheme == "fp8":
        return w.to(dtype) * state["weight_scale"].to(dtype).view(e, 1, 1)
    if quant.scheme == "int4":
        w = unpack_int4(w.reshape(e * n, -1)).view(e, n, -1)
    k = w.shape[2]
    group = k if quant.group_size == -1 else quant.group_size
    s = state["scales"]  # (E, N, K/group)
    return (w.to(dtype).view(e, n, k // group, group) * s.unsqueeze(-1)).view(e, n, k)


def _pack_experts(mod: nn.Module, names: list[str], quant: WeightQuant) -> dict:
    """Pack ``mod``'s stacked weights ``names`` in place: each leaves the module's parameters
    and becomes a property of a subclass (its name ending ``STACKED_SUFFIX``) that unpacks it
    when the module's forward reads it (transformers' experts read ``self.gate_up_proj`` and
    ``self.down_proj``); returns the packed state by name."""
    dtype = getattr(mod, names[0]).dtype  # the compute dtype the experts were built in
    states = {name: _pack_stacked(getattr(mod, name).detach(), quant) for name in names}
    for name in names:
        del mod._parameters[name]
    props = {name: property(lambda self, n=name: _unpack_stacked(
        self.packed_state[n], self.packed_quant, self.packed_dtype)) for name in names}
    prefix = "Fp8" if quant.scheme == "fp8" else "WeightOnly"
    cls = type(mod)
    mod.__class__ = type(f"{prefix}{cls.__name__}{STACKED_SUFFIX}", (cls,), props)
    mod.packed_state, mod.packed_quant, mod.packed_dtype = states, quant, dtype
    return states


# the fp8 GEMM needs K and N multiples of 16 (cuBLASLt FP8; torchao's float8 filter)
_ALIGN_FP8 = 16


def _fits(n: int, k: int, quant: WeightQuant, stacked: bool = False) -> str | None:
    """Why an (N, K) weight (a linear's, or each expert's of a ``stacked`` one) stays in the
    compute dtype, or None."""
    if quant.sparsity and stacked:
        return "2:4 sparse grouped GEMMs are not a kernel TensorRT-LLM or cuSPARSELt runs"
    if quant.sparsity and k % 8:
        return f"in_features {k} is not a multiple of 8 (2:4 groups, 4 positions per byte)"
    if quant.scheme == "fp8" and (k % _ALIGN_FP8 or n % _ALIGN_FP8):
        return f"{n} x {k} is not a multiple of {_ALIGN_FP8} (the fp8 GEMM's alignment)"
    if quant.scheme in _QMAX and quant.group_size != -1 and k % quant.group_size:
        return f"in_features {k} is not a multiple of the group size {quant.group_size}"
    return None


def _convert(lin: nn.Linear, quant: WeightQuant) -> _PackedLinear:
    if quant.scheme in _QMAX:
        return WeightOnlyQuantLinear(lin, quant)
    if quant.scheme == "fp8":
        return SparseFp8QuantLinear(lin) if quant.sparsity else Fp8QuantLinear(lin)
    return SparseQuantLinear(lin)


@dataclass
class QuantState:
    """The converted linears of one model (their module paths) and their packed state."""

    quant: WeightQuant
    linears: dict[str, _PackedLinear] = field(default_factory=dict)
    weight_numel: int = 0
    kept: dict[str, str] = field(default_factory=dict)  # path -> why it stays unconverted
    # stacked weights the blocks multiply without a linear (experts' (E, N, K) parameters,
    # as transformers' MoE layers hold them) that stay in the compute dtype: path -> (shape,
    # why)
    stacked: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)

    # packed stacked expert weights: "module path.name" -> packed state
    experts: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def state_tensors(self) -> list[torch.Tensor]:
        """Every persistent tensor: packed weights, scales, sparsity metadata."""
        return [t for state in (*(lin.state for lin in self.linears.values()),
                                *self.experts.values()) for t in state.values()]

    def state_bytes(self) -> int:
        """Bytes the converted linears' weights hold (the weights' memory in place of their
        compute-dtype parameters, which the model no longer has)."""
        return sum(t.numel() * t.element_size() for t in self.state_tensors())

    def params(self) -> int:
        """Elements of the converted linears' weights as the model defined them (dense)."""
        return self.weight_numel

    def notes(self) -> list[str]:
        experts = (f" and {len(self.experts)} stacked expert weights (grouped GEMMs)"
                   if self.experts else "")
        out = [f"weights of {len(self.linears)} linears{experts} in the layers: "
               f"{self.quant.describe()}; the LM head and other linears in the compute dtype"]
        out += [f"{path} stays in the compute dtype: {why}" for path, why in self.kept.items()]
        if self.stacked:
            numel = sum(math.prod(shape) for shape, _ in self.stacked.values())
            path, (shape, why) = next(iter(self.stacked.items()))
            out.append(f"{len(self.stacked)} stacked expert weights ({numel / 1e9:.3g}B "
                       f"parameters) stay in the compute dtype ({path}: {why})")
        return out


def quantize_linears(model: nn.Module, members: list[str], quant: WeightQuant) -> QuantState:
    """Replace, in place, every ``nn.Linear`` inside the modules ``members`` (the repeated
    blocks' paths) by its packed form; their weight parameters leave the model (the state holds
    them). Call it where the parameters already are what the trace uses (fake or real)."""
    state = QuantState(quant)
    targets = [(path, mod) for path, mod in model.named_modules()
               if isinstance(mod, nn.Linear) and any(path.startswith(m + ".") for m in members)]
    with torch.no_grad():
        for path, lin in targets:
            why = _fits(lin.out_features, lin.in_features, quant)
            if why:
                state.kept[path] = why
                continue
            new = _convert(lin, quant)
            parent, _, name = path.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, name, new)
            state.linears[path] = new
            state.weight_numel += lin.weight.numel()
    stacked: dict[str, list[str]] = {}
    for path, p in model.named_parameters():
        if p.dim() != 3 or not any(path.startswith(m + ".") for m in members):
            continue
        why = _fits(int(p.shape[1]), int(p.shape[2]), quant, stacked=True)
        if why:
            state.stacked[path] = (tuple(p.shape), why)
        else:
            owner, _, name = path.rpartition(".")
            stacked.setdefault(owner, []).append(name)
            state.weight_numel += p.numel()
    with torch.no_grad():
        for owner, names in stacked.items():
            for name, packed in _pack_experts(model.get_submodule(owner), names, quant).items():
                state.experts[f"{owner}.{name}"] = packed
    return state
