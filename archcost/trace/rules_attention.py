"""FLOP rules for fused scaled-dot-product attention kernels, forward and backward.

Forward: QK^T and PV, ``2*B*Hq*Sq*Sk*Dq + 2*B*Hq*Sq*Sk*Dv`` (= 4*B*H*S^2*D for square
attention); backward: the scores recomputed, then dV, dP, dQ, dK,
``2*B*Hq*Sq*Sk*(3*Dq + 2*Dv)`` (2.5x forward). Both are ``sdpa_flop_count`` and
``sdpa_backward_flop_count`` of ``torch.utils.flop_counter``. With grouped-query attention the
key/value heads are broadcast, so FLOPs scale with the query heads Hq.

Causal masks: with ``is_causal`` (or a causal ``custom_mask_type``) half the score/value FLOPs
are counted, flash-attention's convention (REFERENCES.md: FlopCounterMode counts them in full).
A flash sliding window (``window_size_left``/``right``) keeps ``min(Sk, left + right + 1)`` keys
per query. NB: the diagonal and the window's ragged edges are not counted exactly; explicit
``attn_mask`` tensors and ``_efficient_attention_*``'s ``window_size`` count in full.

Layouts: the ``_scaled_dot_product_*`` ops take (B, H, S, D); ``_flash_attention_*`` and
``_efficient_attention_*`` take (B, S, H, D), or packed variable-length (total, H, D) /
(1, total, H, D) with cumulative sequence offsets. NB: offsets are data, invisible to shapes, so a
packed batch counts as ``len(offsets) - 1`` sequences of the maximum lengths, the convention
FlopCounterMode uses for fake tensors. (FlopCounterMode itself reads the (B, S, H, D) layout of
``_flash_attention_forward`` and ``_efficient_attention_forward`` as (B, H, S, D); those two
counts differ from it unless H == S.)
"""

from __future__ import annotations

from dataclasses import dataclass

from archcost.trace.records import OpClass, OpRecord, TensorMeta
from archcost.trace.rules_base import arg, declare_positions, register


@dataclass(frozen=True, slots=True)
class _Kernel:
    """Where a kernel's inputs sit and how it encodes causality."""

    layout: str  # "bhsd" or "bshd"
    backward: bool
    causal: str = "is_causal"  # or "custom_mask_type" (0: none, 1/2: causal top-left/bottom-right)
    varlen: tuple[str, str, str, str] | None = None  # offsets q, offsets k, max q, max k
    window: bool = False  # flash's window_size_left / window_size_right


_FLASH_VARLEN = ("cum_seq_q", "cum_seq_k", "max_q", "max_k")
_EFF_VARLEN = ("cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k")
_SDPA_FWD = "query key value"
_KERNELS: dict[str, tuple[_Kernel, str]] = {
    "aten._scaled_dot_product_flash_attention":
        (_Kernel("bhsd", False), f"{_SDPA_FWD} dropout_p is_causal"),
    "aten._scaled_dot_product_flash_attention_backward": (
        _Kernel("bhsd", True),
        "grad_out query key value out logsumexp cum_seq_q cum_seq_k max_q max_k dropout_p "
        "is_causal"),
    "aten._scaled_dot_product_flash_attention_for_cpu":
        (_Kernel("bhsd", False), f"{_SDPA_FWD} dropout_p is_causal"),
    "aten._scaled_dot_product_flash_attention_for_cpu_backward": (
        _Kernel("bhsd", True), "grad_out query key value out logsumexp dropout_p is_causal"),
    "aten._scaled_dot_product_efficient_attention": (
        _Kernel("bhsd", False), f"{_SDPA_FWD} attn_bias compute_log_sumexp dropout_p is_causal"),
    "aten._scaled_dot_product_efficient_attention_backward": (
        _Kernel("bhsd", True),
        "grad_out_ query key value attn_bias out logsumexp philox_seed philox_offset dropout_p "
        "grad_input_mask is_causal"),
    "aten._scaled_dot_product_cudnn_attention": (
        _Kernel("bhsd", False), f"{_SDPA_FWD} attn_bias compute_log_sumexp dropout_p is_causal"),
    "aten._scaled_dot_product_cudnn_attention_backward": (
        _Kernel("bhsd", True),
        "grad_out query key value out logsumexp philox_seed philox_offset attn_bias cum_seq_q "
        "cum_seq_k max_q max_k dropout_p is_causal"),
    "aten._scaled_dot_product_fused_attention_overrideable":
        (_Kernel("bhsd", False), f"{_SDPA_FWD} attn_bias dropout_p is_causal"),
    "aten._scaled_dot_product_fused_attention_overrideable_backward": (
        _Kernel("bhsd", True),
        "grad_out query key value attn_bias grad_input_mask out logsumexp cum_seq_q cum_seq_k "
        "max_q max_k dropout_p is_causal"),
    # CompositeImplicit (normally decomposed before dispatch); counted if they ever appear
    "aten.scaled_dot_product_attention":
        (_Kernel("bhsd", False), f"{_SDPA_FWD} attn_mask dropout_p is_causal"),
    "aten._scaled_dot_product_attention_math":
        (_Kernel("bhsd", False), f"{_SDPA_FWD} attn_mask dropout_p is_causal"),
    "aten._flash_attention_forward": (
        _Kernel("bshd", False, varlen=_FLASH_VARLEN, window=True),
        f"{_SDPA_FWD} cum_seq_q cum_seq_k max_q max_k dropout_p is_causal"),
    "aten._flash_attention_backward": (
        _Kernel("bshd", True, varlen=_FLASH_VARLEN, window=True),
        "grad_out query key value out logsumexp cum_seq_q cum_seq_k max_q max_k dropout_p "
        "is_causal"),
    "aten._efficient_attention_forward": (
        _Kernel("bshd", False, "custom_mask_type", _EFF_VARLEN),
        f"{_SDPA_FWD} bias cu_seqlens_q cu_seqlens_k max_seqlen_q max_seqlen_k dropout_p "
        "custom_mask_type"),
    "aten._efficient_attention_backward": (
        _Kernel("bshd", True, "custom_mask_type", _EFF_VARLEN),
        "grad_out_ query key value bias out cu_seqlens_q cu_seqlens_k max_seqlen_q max_seqlen_k "
        "logsumexp dropout_p philox_seed philox_offset custom_mask_type"),
}
declare_positions({op: names for op, (_, names) in _KERNELS.items()})
# the quantized overload inserts three descale tensors before dropout_p: is_causal moves
declare_positions({
    "aten._scaled_dot_product_flash_attention.quantized":
        f"{_SDPA_FWD} q_descale k_descale v_descale dropout_p is_causal",
})


def _dims(rec: OpRecord, kernel: _Kernel) -> tuple[int, int, int, int, int, int]:
    """(B, Hq, Sq, Sk, Dq, Dv) of one call."""
    q: TensorMeta = arg(rec, "query")
    k: TensorMeta = arg(rec, "key")
    v: TensorMeta = arg(rec, "value")
    offsets = arg(rec, kernel.varlen[0]) if kernel.varlen else None
    if isinstance(offsets, TensorMeta):  # packed variable-length batch
        batch = max(offsets.numel - 1, 0)
        sq, sk = int(arg(rec, kernel.varlen[2])), int(arg(rec, kernel.varlen[3]))
        hq, dq, dv = q.shape[-2], q.shape[-1], v.shape[-1]  # (total, H, D) or (1, total, H, D)
        return batch, hq, sq, sk, dq, dv
    if kernel.layout == "bshd":
        b, sq, hq, dq = q.shape  # (B, Sq, Hq, D)
        sk, dv = k.shape[1], v.shape[3]
    else:
        b, hq, sq, dq = q.shape  # (B, Hq, Sq, D)
        sk, dv = k.shape[2], v.shape[3]
    return b, hq, sq, sk, dq, dv


def _is_causal(rec: OpRecord, kernel: _Kernel) -> bool:
    if kernel.causal == "custom_mask_type":
        return int(arg(rec, "custom_mask_type", 0) or 0) != 0
    return bool(arg(rec, "is_causal", False))


def _kept_fraction(rec: OpRecord, kernel: _Kernel, sk: int) -> tuple[int, int]:
    """(numerator, denominator) of the score matrix a mask keeps: 1/1, causal 1/2, or a window."""
    causal = _is_causal(rec, kernel)
    if kernel.window:
        left = arg(rec, "window_size_left")
        right = 0 if causal else arg(rec, "window_size_right")
        left = sk if left is None or left < 0 else left
        right = sk if right is None or right < 0 else right
        keys = left + right + 1
        if keys < sk:
            return keys, sk
    return (1, 2) if causal else (1, 1)


def attention_slices(op: str, out_shape) -> int:
    """Independent (batch, head) slices of an attention op from its first output's shape (the
    output, or the query's gradient, in the op's layout): B * H, or 0 when the shape does not
    tell (packed variable-length batches, an op without a rule)."""
    entry = _KERNELS.get(op)
    if entry is None or len(out_shape) != 4:
        return 0
    b, x, y, _ = out_shape
    if entry[0].varlen and b == 1:  # (1, total, H, D) may pack many sequences: unknown
        return 0
    return int(b * (x if entry[0].layout == "bhsd" else y))


def attention_geometry(rec: OpRecord) -> list[int]:
    """[head dim, query length, key length, causal, backward] of an attention op: what an
    attention kernel's measured table is read by (the query-key head dim; causal 1 for a causal
    mask, backward 1 for a backward kernel); [] for other ops. A sliding window or a packed
    batch keeps its maximum lengths."""
    entry = _KERNELS.get(rec.op)
    if entry is None:
        return []
    kernel = entry[0]
    _, _, sq, sk, dq, _ = _dims(rec, kernel)
    return [int(dq), int(sq), int(sk), int(_is_causal(rec, kernel)), int(kernel.backward)]


def attention(rec: OpRecord) -> int:
    kernel = _KERNELS[rec.op][0]
    b, h, sq, sk, dq, dv = _dims(rec, kernel)
    if kernel.backward:  # recompute QK^T, dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q
        flops = 2 * b * h * sq * sk * (3 * dq + 2 * dv)
    else:  # S = Q K^T, O = P V
        flops = 2 * b * h * sq * sk * (dq + dv)
    num, den = _kept_fraction(rec, kernel, sk)
    return flops * num // den


register(*_KERNELS, op_class=OpClass.ATTENTION)(attention)
