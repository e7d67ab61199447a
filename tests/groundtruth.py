"""Measurements of real CPU runs used as ground truth by the tests (never by the package)."""

from __future__ import annotations

import torch


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


class StorageTracker:
    """Counts bytes of live storages created while active (a storage-counting dispatch mode).

    Storages are freed when their Python storage object dies (weakref finalizer); storages
    that existed before are not counted. ``peak`` is the most bytes live at once.
    """

    def __init__(self):
        import weakref

        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self
        self.live: dict[int, int] = {}
        self.cur = 0
        self.peak = 0
        self._weakref = weakref

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                inputs = {
                    x.untyped_storage().data_ptr()
                    for x in _flat(list(args) + list((kwargs or {}).values()))
                    if isinstance(x, torch.Tensor)
                }
                for t in _flat(out):
                    if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                        tracker._track(t)  # a new allocation (not a view or in-place result)
                return out

        self.mode = _Mode()

    def _track(self, t):
        st = t.untyped_storage()
        key = st.data_ptr()
        if key in self.live or st.nbytes() == 0:
            return
        self.live[key] = st.nbytes()
        self.cur += st.nbytes()
        self.peak = max(self.peak, self.cur)
        self._weakref.finalize(st, self._free, key)

    def _free(self, key):
        self.cur -= self.live.pop(key, 0)

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def _flat(obj):
    if isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _flat(x)
    else:
        yield obj


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
