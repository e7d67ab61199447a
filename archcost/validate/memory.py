"""Measured memory of real CPU runs: a dispatch mode that counts the bytes of every storage
created while it is active and frees them when the storage dies. On CUDA the allocator's own
statistics (``torch.cuda.max_memory_allocated``) are used instead.
"""

from __future__ import annotations

import torch

__all__ = ["StorageTracker"]


class StorageTracker:
    """Counts bytes of live storages created while active (a storage-counting dispatch mode).

    Storages are freed when their Python storage object dies (weakref finalizer); storages
    that existed before are not counted; a DTensor counts its local shard. ``peak`` is the most
    bytes live at once.
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
                    _ptr(x) for x in _flat(list(args) + list((kwargs or {}).values()))
                    if isinstance(x, torch.Tensor)
                }
                for t in _flat(out):
                    if isinstance(t, torch.Tensor) and _ptr(t) not in inputs:
                        tracker._track(t)  # a new allocation (not a view or in-place result)
                return out

        self.mode = _Mode()

    def _track(self, t):
        t = _plain(t)
        st = t.untyped_storage()
        key = _ptr(t)
        if key is None or key in self.live or st.nbytes() == 0:
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


def _plain(t: torch.Tensor) -> torch.Tensor:
    """The local tensor of a DTensor (the mode sees DTensor ops, not the local ops they run)."""
    return getattr(t, "_local_tensor", t)


def _ptr(t: torch.Tensor) -> int | None:
    """Address of a tensor's storage; None for storages freed in place (FSDP's resize to 0)."""
    try:
        return _plain(t).untyped_storage().data_ptr()
    except RuntimeError:
        return None


def _flat(obj):
    if isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _flat(x)
    else:
        yield obj
