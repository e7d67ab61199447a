"""Measurements of real CPU runs used as ground truth by the tests (never by the package)."""

from __future__ import annotations

import torch

from archcost.validate.memory import StorageTracker


def real_saved_bytes(spec, batch_size: int, seq_len: int, dtype=torch.float32) -> int:
    """Bytes of distinct storages autograd saves during a real forward + loss, less parameters."""
    torch.manual_seed(0)
    model = spec.build(batch_size, seq_len).to(dtype)
    inputs = spec.inputs(model, batch_size, seq_len)
    if isinstance(inputs, dict):
        inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    else:
        inputs = tuple(v.to(dtype) if v.is_floating_point() else v for v in inputs)
    state = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in state:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(**inputs) if isinstance(inputs, dict) else model(*inputs)
        loss = spec.loss(out, inputs)
    loss.backward()
    return sum(seen.values())


def real_step_flops(spec, batch_size: int, seq_len: int) -> int:
    """FLOPs FlopCounterMode counts in one real forward and backward of ``spec`` (seed 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = spec.build(batch_size, seq_len)
    inputs = spec.inputs(model, batch_size, seq_len)
    with FlopCounterMode(display=False) as fc:
        spec.loss(model(*inputs), inputs).backward()
    return fc.get_total_flops()


def real_step_peak(spec, batch_size: int, seq_len: int, optimizer_factory) -> tuple[int, int]:
    """(persistent bytes, peak bytes) of the second real training step on CPU."""
    import gc

    torch.manual_seed(0)
    model = spec.build(batch_size, seq_len)
    inputs = spec.inputs(model, batch_size, seq_len)
    opt = optimizer_factory(model.parameters())

    def step():
        out = model(**inputs) if isinstance(inputs, dict) else model(*inputs)
        spec.loss(out, inputs).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    gc.collect()
    persistent = set()
    for t in list(model.parameters()) + list(model.buffers()):
        persistent.add((t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()))
    for state in opt.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                persistent.add((v.untyped_storage().data_ptr(), v.untyped_storage().nbytes()))
    base = sum(n for _, n in persistent)
    with StorageTracker() as tr:
        step()
    return base, base + tr.peak


# ---- one real CPU training step, measured: the corpus of real models (test_hf_corpus.py) ----

_ATEN = torch.ops.aten
# FlopCounterMode has no formula for these CPU kernels (it counts them as 0)
_SDPA_CPU = {_ATEN._scaled_dot_product_flash_attention_for_cpu.default: False,
             _ATEN._scaled_dot_product_flash_attention_for_cpu_backward.default: True}


def _grouped_mm_flops(a, b, out) -> int:
    """2 * (multiply-adds) of ``aten._grouped_mm``: every output element is a dot product over
    the contracted dimension, whose length is the same for all groups when it is a full
    dimension, and split across the groups when ``offs`` cut it (2D x 2D -> 3D, a weight's
    gradient): then the groups' outputs cover it once in all."""
    if a.dim() == 2 and b.dim() == 2:  # (K?, M) x (M, N) grouped along M: sum over groups of K*N*m_g
        return 2 * a.shape[0] * a.shape[1] * b.shape[1]
    return 2 * out.numel() * a.shape[-1]


class _Kernels(torch.utils._python_dispatch.TorchDispatchMode):
    """The closed-form FLOPs of the kernels FlopCounterMode does not count on CPU: fused
    attention (forward 4*B*H*Sq*Sk*D, backward 2.5x that, torch.utils.flop_counter's formulas,
    halved when causal: archcost's documented convention) and grouped GEMMs."""

    def __init__(self):
        super().__init__()
        self.attention = 0
        self.grouped_mm = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in _SDPA_CPU:
            if _SDPA_CPU[func]:  # grad_out, query, key, value, out, logsumexp, dropout, causal
                grad, q, k, v = args[:4]
                causal = args[7] if len(args) > 7 else kwargs.get("is_causal", False)
                flops = sdpa_backward_flop_count(grad.shape, q.shape, k.shape, v.shape)
            else:  # query, key, value, dropout_p, is_causal
                q, k, v = args[:3]
                causal = args[4] if len(args) > 4 else kwargs.get("is_causal", False)
                flops = sdpa_flop_count(q.shape, k.shape, v.shape)
            self.attention += flops // 2 if causal else flops
        elif func is _ATEN._grouped_mm.default:
            self.grouped_mm += _grouped_mm_flops(args[0], args[1], out)
        return out


def real_step_counts(spec, batch_size: int, seq_len: int) -> dict[str, int]:
    """One real fp32 training step on CPU (forward, loss, backward) of a model spec, measured:
    parameters (numel of the distinct parameters, all and trainable), matmul and convolution FLOPs (FlopCounterMode
    plus grouped GEMMs), fused-attention FLOPs, and the bytes of the distinct storages autograd
    saves that are not parameters or buffers."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = spec.build(batch_size, seq_len)
    inputs = spec.inputs(model, batch_size, seq_len)
    state = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    saved: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in state:
            saved[st.data_ptr()] = st.nbytes()
        return t

    kernels = _Kernels()
    with FlopCounterMode(display=False) as fc, kernels:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(**inputs) if isinstance(inputs, dict) else model(*inputs)
            loss = spec.loss(out, inputs)
        loss.backward()
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "matmul_conv_flops": fc.get_total_flops() + kernels.grouped_mm,
        "attention_flops": kernels.attention,
        "saved_bytes": sum(saved.values()),
    }
