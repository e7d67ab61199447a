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
