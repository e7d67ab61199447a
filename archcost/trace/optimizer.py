"""The optimizer step, traced one parameter at a time so each op has an owning module.

Mixed precision keeps an fp32 master copy: the gradient is cast to fp32, the master updated and
cast back into the 16-bit weight (Micikevicius et al. 2018).
"""

from __future__ import annotations

import torch
from torch import nn

from archcost.errors import TraceError

__all__ = ["OPTIMIZERS", "make_optimizer", "optimizer_step"]

OPTIMIZERS = ("adamw", "adam", "sgd", "adamw-fused", "adam-fused")


def make_optimizer(name: str, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Single-tensor (one kernel per step of the update) or fused (one kernel per update)."""
    fused = name.endswith("-fused")
    base = name.removesuffix("-fused")
    kw = {"fused": True} if fused else {"foreach": False}
    if base == "adamw":
        return torch.optim.AdamW(params, lr=1e-4, **kw)
    if base == "adam":
        return torch.optim.Adam(params, lr=1e-4, **kw)
    if base == "sgd" and not fused:
        return torch.optim.SGD(params, lr=1e-2, momentum=0.9, foreach=False)
    raise TraceError(f"--optimizer {name!r} is unknown; use one of {', '.join(OPTIMIZERS)}")


def optimizer_step(st, params_by_name, precision, optimizer: str, after_update=None):
    """Step the optimizer one parameter at a time; ``st`` (the capture state) learns the owner;
    ``after_update(p)`` runs on each updated weight (low precision recasts its cache).

    Returns (optimizer-state bytes, fp32 master-weight bytes), each times its block count.
    """
    state_bytes = 0
    master_bytes = 0
    for name, p in params_by_name.items():
        if p.grad is None:
            continue
        module = name.rpartition(".")[0]
        st.optimizer_module = module
        count = st.repeats.count_for(module)
        if precision.mixed:
            # fp32 master copy, gradient cast to fp32, update, cast back (Micikevicius et al. 2018)
            master = nn.Parameter(p.detach().to(torch.float32))
            master.grad = p.grad.to(torch.float32)
            target = master
            master_bytes += master.numel() * 4 * count
        else:
            target = p
        opt = make_optimizer(optimizer, [target])
        opt.step()
        for value in opt.state[target].values():
            if isinstance(value, torch.Tensor):
                state_bytes += value.numel() * value.element_size() * count
        if precision.mixed:
            with torch.no_grad():
                p.copy_(master)
        if after_update is not None:
            after_update(p)
        p.grad = None
    return state_bytes, master_bytes
