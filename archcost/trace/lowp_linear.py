"""Low-precision linear layers for tracing: the GEMMs, casts and scaling state of fp8/mxfp8/nvfp4.

``LowPrecisionLinears`` converts the ``nn.Linear`` layers of a model's repeated blocks (the
transformer layers) before a step is traced; linears outside them (the LM head, input
projections) stay in bf16, as Megatron-Core (Transformer Engine's linears are the transformer
layer's; the output layer is a bf16 ``ColumnParallelLinear``) and torchtitan (float8 skips the
``output`` linear) train. A linear whose in/out features are not multiples of 16 (32 for MXFP8)
stays in bf16 (torchao's float8 module filter, Transformer Engine's alignment).

A converted linear y = x W^T (x: M x K tokens, W: N x K) runs, per micro-batch:

- forward: cast x (``lowp_ops.quantize``), the weight's operands (cached or cast now), and
  ``aten._scaled_mm(x, W^T)`` -> bf16, bias fused; saved for backward: x's column operand and
  W's (the FP8 copies, not the bf16 tensors);
- backward: cast the output gradient g, dgrad ``_scaled_mm(g, W)`` and wgrad
  ``_scaled_mm(g^T, x)``, each operand in the layout its GEMM contracts (Hopper's fp8 GEMM
  takes only row-major A and column-major B, so each tensor has a row and a column operand).

Per tensor and recipe (n = elements of the tensor; bytes read + written by the casts):

| recipe | ops per tensor | bytes |
|---|---|---|
| fp8 tensorwise | amax, then one cast writing both layouts and one fp32 scale | 2n + (2n + 2n + 4) |
| fp8 delayed | one cast with the history's scale, writing both layouts and the amax | 2n + 4 + 2n + 8 |
| fp8 rowwise | activations: cast rows + bf16 transpose, cast the transpose's rows; weight: cast rows, bf16 transpose (``aten.clone``), cast its rows | 8n (10n for a weight) + 4 B per row |
| mxfp8 | cast rows, cast columns, each from bf16 | 2 x (2n + n) + E8M0 scales, n/32 each |
| nvfp4 | amax, cast rows, cast columns | 2n + 2 x (2n + n/2) + E4M3 scales, n/16 each |

With the weight cache (``fp8_weight_cache``, Transformer Engine) the weight's casts run once
per step, traced in the optimizer phase after the update (``quantize_into`` the cache), and the
cache (both operands) is persistent memory; without it (torchao) every forward casts the weight
and saves its column operand. Delayed scaling adds, at the end of forward and of backward, one
``amax_history_update`` over every converted linear's history (3 tensors per linear forward:
input, weight, output; 2 backward: grad output, grad input; 1024 steps long), the history and
the scales being persistent state.

NB: what is not traced: the amax all-reduces across tensor/data-parallel ranks (a few bytes
each), torchao's scalar scale kernels (fused by torch.compile), Transformer Engine's torch.cat
of the amaxes before the history update, NVFP4's random Hadamard transform and 16 x 16 weight
blocks (1 x 16 blocks are traced for every tensor), and fp8 parameters without a bf16 copy
(Megatron's ``--fp8-param-gather``): the bf16 weight is always kept. Blackwell reads fp8 column
operands without a transpose; the column copies are traced on every GPU (Hopper's layout).
Experts stacked as 3-D parameters (batched matmuls) stay in bf16.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from archcost.trace.lowp_ops import FP8_MAX, amax, amax_history_update, quantize, quantize_into
from archcost.trace.precision import LowPrecisionFormat

__all__ = ["LowPrecisionLinears", "HISTORY_LEN"]

HISTORY_LEN = 1024  # Transformer Engine DelayedScaling.amax_history_len default
_FWD_TENSORS, _BWD_TENSORS = 3, 2  # history slots per linear (TE fp8_meta scaling_fwd / _bwd)


@dataclass
class _Operands:
    """A tensor's GEMM operands: ``row`` (contracts its last dim), ``col`` (its first)."""

    row: torch.Tensor
    row_scale: torch.Tensor
    col: torch.Tensor
    col_scale: torch.Tensor


@dataclass
class _Linear:
    """One converted linear: its module path, scales (delayed) and weight cache."""

    path: str
    fmt: LowPrecisionFormat
    scales: dict[str, torch.Tensor] = field(default_factory=dict)
    weight_numel: int = 0
    cache: list[list[torch.Tensor]] | None = None  # per cast, its outputs


def _layouts(fmt: LowPrecisionFormat) -> list[str]:
    """The quantize calls of one tensor: one fused call for per-tensor scales, else two."""
    return ["both"] if fmt.block == 0 else ["row", "col"]


class _Caster:
    """Issues the casts of one tensor per the format, functional or into a cache."""

    def __init__(self, fmt: LowPrecisionFormat):
        self.fmt = fmt

    def _args(self, dtype: str) -> dict:
        return dict(fmt=dtype, block=self.fmt.block, scale_dtype=self.fmt.scale_dtype)

    def cast(self, t: torch.Tensor, dtype: str, scale: torch.Tensor | None,
             is_weight: bool) -> _Operands:
        f = self.fmt
        a = amax(t) if f.amax_pass else None
        if f.block == 0:
            out = quantize(t, a, scale, layout="both", hp_transpose=False,
                           record_amax=f.delayed, **self._args(dtype))
            return _Operands(out[0], out[2], out[1], out[2])
        if f.block == -1:  # torchao rowwise: the column operand is cast from a bf16 transpose
            if is_weight:
                row = quantize(t, a, None, layout="row", hp_transpose=False, record_amax=False,
                               **self._args(dtype))
                t_hp = t.t().contiguous()
            else:
                *row, t_hp = quantize(t, a, None, layout="row", hp_transpose=True,
                                      record_amax=False, **self._args(dtype))
            col = quantize(t_hp, None, None, layout="row", hp_transpose=False,
                           record_amax=False, **self._args(dtype))
            return _Operands(row[0], row[1], col[0], col[1])
        row = quantize(t, a, None, layout="row", hp_transpose=False, record_amax=False,
                       **self._args(dtype))
        col = quantize(t, a, None, layout="col", hp_transpose=False, record_amax=False,
                       **self._args(dtype))
        return _Operands(row[0], row[1], col[0], col[1])

    def cache_shapes(self, w: torch.Tensor) -> list[list[torch.Tensor]]:
        """Tensors shaped like the weight's operands, one list per cast (make them outside the
        recorder: the cache is persistent state, not a traced op)."""
        f = self.fmt
        calls = [("both", w)] if f.block == 0 else [("row", w), ("col", w)]
        if f.block == -1:
            calls = [("row", w), ("row", w.t())]
        return [quantize(t, torch.ones(()) if f.amax_pass else None,
                         torch.ones(()) if f.delayed else None, layout=layout,
                         hp_transpose=False, record_amax=False, **self._args(f.fwd_dtype))
                for layout, t in calls]

    def cast_into(self, w: torch.Tensor, scale: torch.Tensor | None, cache: list) -> None:
        """Recast the weight into its cache (after the optimizer step)."""
        f = self.fmt
        a = amax(w) if f.amax_pass else None
        args = self._args(f.fwd_dtype)
        if f.block == 0:
            quantize_into(w, a, scale, cache[0], layout="both", **args)
        elif f.block == -1:
            quantize_into(w, a, None, cache[0], layout="row", **args)
            quantize_into(w.t().contiguous(), None, None, cache[1], layout="row", **args)
        else:
            quantize_into(w, a, None, cache[0], layout="row", **args)
            quantize_into(w, a, None, cache[1], layout="col", **args)

    @staticmethod
    def from_cache(cache: list[list[torch.Tensor]]) -> _Operands:
        if len(cache) == 1:  # per tensor: row, col, one scale
            row, col, scale = cache[0]
            return _Operands(row, scale, col, scale)
        return _Operands(cache[0][0], cache[0][1], cache[1][0], cache[1][1])


def _gemm(a: torch.Tensor, a_scale, b_t: _Operands, out_dtype, bias=None) -> torch.Tensor:
    """a (M, K) @ b^T where ``b_t`` holds b's operands; per-row scales of b become columns."""
    b_scale = b_t.row_scale.t() if b_t.row_scale.dim() == 2 and b_t.row_scale.shape[1] == 1 \
        else b_t.row_scale
    return torch._scaled_mm(a, b_t.row.t(), a_scale, b_scale, bias=bias, out_dtype=out_dtype)


class _LowpLinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, lin: _Linear, caster: _Caster, cached: bool):
        fmt = lin.fmt
        x2 = x.reshape(-1, x.shape[-1])  # (M, K)
        xq = caster.cast(x2, fmt.fwd_dtype, lin.scales.get("x"), is_weight=False)
        if cached:
            wq = caster.from_cache(lin.cache)
        else:
            wq = caster.cast(weight, fmt.fwd_dtype, lin.scales.get("w"), is_weight=True)
        y = _gemm(xq.row, xq.row_scale, wq, x.dtype, bias)  # (M, N)
        ctx.save_for_backward(xq.col, xq.col_scale, wq.col, wq.col_scale)
        ctx.meta = (lin, caster, x.shape, bias is not None, weight.dtype)
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, gy):
        x_col, x_col_s, w_col, w_col_s = ctx.saved_tensors
        lin, caster, x_shape, has_bias, w_dtype = ctx.meta
        g2 = gy.reshape(-1, gy.shape[-1])  # (M, N)
        gq = caster.cast(g2, lin.fmt.grad_dtype, lin.scales.get("g"), is_weight=False)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:  # dgrad (M, N) @ (N, K)
            dx = _gemm(gq.row, gq.row_scale, _Operands(w_col, w_col_s, w_col, w_col_s),
                       gy.dtype).view(x_shape)
        if ctx.needs_input_grad[1]:  # wgrad (N, M) @ (M, K)
            dw = _gemm(gq.col, gq.col_scale, _Operands(x_col, x_col_s, x_col, x_col_s), w_dtype)
        if has_bias and ctx.needs_input_grad[2]:
            db = g2.sum(0)
        return dx, dw, db, None, None, None


class LowPrecisionLinears:
    """The converted linears of one model and the state a step needs (build inside the fake
    mode, before tracing; every tensor made here is persistent state, not a traced op)."""

    def __init__(self, model: nn.Module, block_members: list[str], fmt: LowPrecisionFormat,
                 weight_cache: bool):
        self.fmt = fmt
        self.caster = _Caster(fmt)
        self.weight_cache = weight_cache
        self.linears: dict[str, _Linear] = {}
        self.by_param: dict[int, _Linear] = {}
        align = 32 if fmt.block == 32 else 16
        for path, mod in model.named_modules():
            if not isinstance(mod, nn.Linear) or not any(
                    path.startswith(m + ".") for m in block_members):
                continue
            if mod.in_features % align or mod.out_features % align:
                continue
            lin = _Linear(path, fmt, weight_numel=mod.weight.numel())
            if fmt.delayed:
                lin.scales = {k: torch.ones((), dtype=torch.float32) for k in ("x", "w", "g")}
            if weight_cache:
                lin.cache = self.caster.cache_shapes(mod.weight)
            self.linears[path] = lin
            self.by_param[id(mod.weight)] = lin
            mod.forward = self._forward(mod, lin)
        n = len(self.linears)
        self.history: dict[bool, tuple[torch.Tensor, ...]] = {}
        if fmt.delayed and n:
            for fwd, k in ((True, _FWD_TENSORS), (False, _BWD_TENSORS)):
                self.history[fwd] = (torch.zeros(HISTORY_LEN, k * n), torch.ones(k * n),
                                     torch.zeros(k * n))

    def _forward(self, mod: nn.Linear, lin: _Linear):
        def forward(x):
            return _LowpLinearFn.apply(x, mod.weight, mod.bias, lin, self.caster,
                                       self.weight_cache)
        return forward

    def state_tensors(self) -> list[torch.Tensor]:
        """Every persistent tensor: weight caches, scales and histories."""
        out = [t for lin in self.linears.values() for call in (lin.cache or []) for t in call]
        out += [t for lin in self.linears.values() for t in lin.scales.values()]
        out += [t for h in self.history.values() for t in h]
        return out

    def params(self) -> int:
        """Elements of the converted linears' weights (every layer's)."""
        return sum(lin.weight_numel for lin in self.linears.values())

    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state_tensors())

    def end_of_pass(self, forward: bool) -> None:
        """Delayed scaling: one history update over every linear at the end of a pass."""
        if forward in self.history:
            history, scale, amaxes = self.history[forward]
            fmax = FP8_MAX[self.fmt.fwd_dtype if forward else self.fmt.grad_dtype]
            amax_history_update(history, scale, amaxes, fmax)

    def after_update(self, param: torch.Tensor) -> None:
        """A weight was updated: recast it into its cache (once per step)."""
        lin = self.by_param.get(id(param))
        if lin is not None and lin.cache is not None:
            with torch.no_grad():
                self.caster.cast_into(param, lin.scales.get("w"), lin.cache)
