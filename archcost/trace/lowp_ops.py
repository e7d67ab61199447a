"""The kernels low-precision training adds, as torch custom ops the capture records one each.

A low-precision linear (``lowp_linear``) runs these beside ``aten._scaled_mm``. Each op is one
kernel of the stacks that train this way, so its bytes are the tensors it reads and writes (the
default byte rule of ``rules_base`` applies: inputs read, fresh outputs written), and it runs for
real on a CPU (tests compare the bytes a capture records with real tensors' sizes):

- ``archcost_lowp::amax(x)``: the absolute maximum of a tensor, one fp32 value: reads x.
  Current scaling runs it before the cast (Transformer Engine ``Float8CurrentScaling``, torchao
  tensorwise: "amax stage 1" in torchao's roofline model), and NVFP4 for its per-tensor scale.
- ``archcost_lowp::quantize(x, amax, scale, ...)``: reads the 2-D bf16 tensor once and writes
  the low-precision data and its scales: ``layout`` ``row`` (x as it is, scales along its
  rows), ``col`` (x transposed, for the GEMM that contracts x's first dimension) or ``both``
  (per-tensor scaling only: Transformer Engine's fused cast-transpose, torchao's compiled cast
  "writing row- and column-major fp8"). Scales: ``block`` 0 one fp32 per tensor (from ``amax``
  under current scaling, from ``scale`` under delayed scaling, which also writes the current
  amax: ``record_amax``); -1 one fp32 per row; 32 or 16 one ``scale_dtype`` value per block of
  that many consecutive elements, stored in cuBLAS's block-scale layout: rows padded to 128 and
  blocks per row to 4 (``block_scale_shape``). NVFP4 adds an fp32 per-tensor scale from
  ``amax``. ``hp_transpose`` also writes x transposed in bf16 (torchao's rowwise cast, whose
  second cast reads that copy).
- ``archcost_lowp::quantize_into(x, ..., out)``: the same cast written into existing tensors
  (a weight cache kept across micro-batches); writes ``out``.
- ``archcost_lowp::amax_history_update(history, scale, amax)``: delayed scaling's update at the
  end of a pass (Transformer Engine ``reduce_and_update_fp8_tensors``): rolls every tensor's amax
  history, records the new amaxes and computes the scales from the history's maximum.

NB: the real (CPU) kernels are references for shapes and bytes, with plain round-to-nearest
numerics: no stochastic rounding, no random Hadamard transform (NVFP4), no swizzle of block
scales (cuBLAS interleaves 128 x 4 tiles; the bytes are the same).
"""

from __future__ import annotations

import torch

__all__ = ["amax", "quantize", "quantize_into", "amax_history_update", "block_scale_shape",
           "quantized_shapes", "LIBRARY", "FP8_MAX"]

LIBRARY = "archcost_lowp"
FP4 = "float4_e2m1fn_x2"
FP8_MAX = {"float8_e4m3fn": 448.0, "float8_e5m2": 57344.0, FP4: 6.0}
_E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
_EMAX = {"float8_e4m3fn": 8, "float8_e5m2": 15}  # largest power of two of the element format


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def block_scale_shape(rows: int, cols: int, block: int) -> tuple[int, int]:
    """(rows, blocks) of a block-scale tensor in cuBLAS's layout: one scale per ``block``
    elements of a row, rows padded to 128 and blocks per row to 4 (cuBLAS's 128 x 4 tiles)."""
    blocks = -(-cols // block)
    return -(-rows // 128) * 128, -(-blocks // 4) * 4


def quantized_shapes(rows: int, cols: int, fmt: str, block: int, scale_dtype: str, layout: str,
                     hp_transpose: bool, record_amax: bool, global_scale: bool
                     ) -> list[tuple[tuple[int, ...], str]]:
    """(shape, dtype name) of each output of ``quantize`` on a (rows, cols) tensor."""
    out: list[tuple[tuple[int, ...], str]] = []
    for r, c in {"row": [(rows, cols)], "col": [(cols, rows)],
                 "both": [(rows, cols), (cols, rows)]}[layout]:
        out.append(((r, -(-c // 2)) if fmt == FP4 else (r, c), fmt))
        if block == -1:
            out.append(((r, 1), "float32"))
        elif block > 0:
            out.append((block_scale_shape(r, c, block), scale_dtype))
    if block == 0:
        out.append(((), "float32"))  # the per-tensor scale's inverse, shared by both layouts
    if global_scale:
        out.append(((), "float32"))
    if hp_transpose:
        out.append(((cols, rows), "bfloat16"))
    if record_amax:
        out.append(((), "float32"))
    return out


# --- real kernels (CPU references) ------------------------------------------------------------
def _e2m1_pack(v: torch.Tensor) -> torch.Tensor:
    """Round to the nearest E2M1 value and pack two per byte (first element in the low nibble)."""
    mag = v.abs().clamp(max=6.0)
    code = (mag[..., None] - _E2M1).abs().argmin(dim=-1).to(torch.uint8)
    code = code | ((v < 0).to(torch.uint8) << 3)
    if code.shape[-1] % 2:
        code = torch.nn.functional.pad(code, (0, 1))
    return (code[..., 0::2] | (code[..., 1::2] << 4)).contiguous().view(torch.float4_e2m1fn_x2)


def _blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """(rows, blocks, block) view of x in fp32, the last block zero-padded."""
    pad = -x.shape[1] % block
    xf = torch.nn.functional.pad(x.float(), (0, pad))
    return xf.reshape(x.shape[0], -1, block)


def _pad_scales(s: torch.Tensor, block: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    out = torch.ones(block_scale_shape(s.shape[0], cols, block), dtype=torch.float32)
    out[: s.shape[0], : s.shape[1]] = s
    return out.to(dtype)


def _cast(x: torch.Tensor, fmt: str, block: int, scale_dtype: str, s_tensor, global_s
          ) -> list[torch.Tensor]:
    """Data and (block or row) scales of one layout of x (rows, cols)."""
    fmax = FP8_MAX[fmt]
    if block == 0:
        return [(x.float() * s_tensor).clamp(-fmax, fmax).to(_dtype(fmt))]
    if block == -1:
        s = fmax / x.float().abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
        return [(x.float() * s).clamp(-fmax, fmax).to(_dtype(fmt)), 1.0 / s]
    xb = _blocks(x, block)
    amax_b = xb.abs().amax(dim=-1, keepdim=True).clamp_min(1e-30)
    if fmt == FP4:  # NVFP4: E4M3 block scales under the fp32 per-tensor scale
        dec = (amax_b / fmax * global_s).to(torch.float8_e4m3fn).float().clamp_min(2.0**-9)
        data = _e2m1_pack((xb * global_s / dec).reshape(x.shape[0], -1)[:, : x.shape[1]])
        return [data, _pad_scales(dec[..., 0], block, x.shape[1], _dtype(scale_dtype))]
    scale = torch.exp2(torch.floor(torch.log2(amax_b)) - _EMAX[fmt]).clamp(2.0**-127, 2.0**127)
    data = (xb / scale).clamp(-fmax, fmax).reshape(x.shape[0], -1)[:, : x.shape[1]]
    return [data.to(_dtype(fmt)), _pad_scales(scale[..., 0], block, x.shape[1],
                                              _dtype(scale_dtype))]


def _quantize(x, amax, scale, fmt, block, scale_dtype, layout, hp_transpose, record_amax):
    global_s = None
    s_tensor = None
    if block == 0:
        s_tensor = scale.float() if scale is not None else FP8_MAX[fmt] / amax.float().clamp_min(1e-12)
    elif fmt == FP4:
        global_s = 448.0 * FP8_MAX[fmt] / amax.float().clamp_min(1e-12)
    views = {"row": [x], "col": [x.t()], "both": [x, x.t()]}[layout]
    out = [t for v in views for t in _cast(v.contiguous(), fmt, block, scale_dtype, s_tensor,
                                           global_s)]
    if block == 0:
        out.append((1.0 / s_tensor).reshape(()))
    if global_s is not None:
        out.append((1.0 / global_s).reshape(()))
    if hp_transpose:
        out.append(x.t().contiguous())
    if record_amax:
        out.append(x.float().abs().amax().reshape(()))
    return out


@torch.library.custom_op(f"{LIBRARY}::amax", mutates_args=())
def amax(x: torch.Tensor) -> torch.Tensor:
    return x.float().abs().amax().reshape(())


@amax.register_fake
def _amax_fake(x):
    return x.new_empty((), dtype=torch.float32)


@torch.library.custom_op(f"{LIBRARY}::quantize", mutates_args=())
def quantize(x: torch.Tensor, amax: torch.Tensor | None, scale: torch.Tensor | None, fmt: str,
             block: int, scale_dtype: str, layout: str, hp_transpose: bool,
             record_amax: bool) -> list[torch.Tensor]:
    return _quantize(x, amax, scale, fmt, block, scale_dtype, layout, hp_transpose, record_amax)


@quantize.register_fake
def _quantize_fake(x, amax, scale, fmt, block, scale_dtype, layout, hp_transpose, record_amax):
    shapes = quantized_shapes(x.shape[0], x.shape[1], fmt, block, scale_dtype, layout,
                              hp_transpose, record_amax, fmt == FP4 and block > 0)
    return [x.new_empty(shape, dtype=_dtype(dt)) for shape, dt in shapes]


@torch.library.custom_op(f"{LIBRARY}::quantize_into", mutates_args=("out",))
def quantize_into(x: torch.Tensor, amax: torch.Tensor | None, scale: torch.Tensor | None,
                  out: list[torch.Tensor], fmt: str, block: int, scale_dtype: str,
                  layout: str) -> None:
    fresh = _quantize(x, amax, scale, fmt, block, scale_dtype, layout, False, False)
    for dst, src in zip(out, fresh, strict=True):
        dst.copy_(src)


@quantize_into.register_fake
def _quantize_into_fake(x, amax, scale, out, fmt, block, scale_dtype, layout):
    return None


@torch.library.custom_op(f"{LIBRARY}::amax_history_update", mutates_args=("history", "scale"))
def amax_history_update(history: torch.Tensor, scale: torch.Tensor, amax: torch.Tensor,
                        fmax: float) -> None:
    rolled = torch.roll(history, 1, dims=0)
    rolled[0] = amax
    history.copy_(rolled)
    scale.copy_(fmax / history.amax(dim=0).clamp_min(1e-12))


@amax_history_update.register_fake
def _amax_history_update_fake(history, scale, amax, fmax):
    return None
