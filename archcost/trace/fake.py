"""Fake tensors for tracing: a meta-built model made of FakeTensors, and quiet failures."""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

__all__ = ["quiet_fake_tensor_log", "to_fake"]


@contextlib.contextmanager
def quiet_fake_tensor_log():
    """Fake tensors log a traceback when a model's op fails; we report it in one line instead."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


def to_fake(model: nn.Module, dtype: torch.dtype) -> None:
    """Swap every meta parameter/buffer for an empty FakeTensor on CPU (call inside fake mode).

    Tied parameters (one tensor registered in two modules) stay tied: each is swapped once.
    """
    swapped: dict[int, torch.Tensor] = {}
    for mod in model.modules():
        for name, p in list(mod._parameters.items()):
            if p is None:
                continue
            if id(p) not in swapped:
                new = torch.empty(p.shape, dtype=dtype if p.is_floating_point() else p.dtype)
                swapped[id(p)] = nn.Parameter(new, requires_grad=p.requires_grad)
            mod._parameters[name] = swapped[id(p)]
        for name, b in list(mod._buffers.items()):
            if b is None:
                continue
            if id(b) not in swapped:
                swapped[id(b)] = torch.zeros(
                    b.shape, dtype=dtype if b.is_floating_point() else b.dtype
                )
            mod._buffers[name] = swapped[id(b)]
