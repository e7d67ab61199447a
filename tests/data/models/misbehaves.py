"""A model file that ends the process or is interrupted where it is told to (bad-input tests).

``--set at=builder|inputs|forward|loss`` picks the function, ``--set action=...`` what it does
there: ``exit0`` / ``exit3`` / ``exit_text`` (``sys.exit`` with that code), ``interrupt``
(``KeyboardInterrupt``, as Ctrl-C raises it) or ``sleep`` (write ``marker``, then wait: a real
Ctrl-C arrives mid-run).
"""

import sys
import time
from pathlib import Path

import torch
from torch import nn

_ACTIONS = {"exit0": 0, "exit3": 3, "exit_text": "stopped by the model"}


def _misbehave(here: str, at: str, action: str, marker: str) -> None:
    if here != at:
        return
    if action == "interrupt":
        raise KeyboardInterrupt
    if action == "sleep":
        Path(marker).write_text(here)
        time.sleep(120)
        return
    sys.exit(_ACTIONS[action])


class Net(nn.Module):
    def __init__(self, at: str, action: str, marker: str):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.at, self.action, self.marker = at, action, marker

    def forward(self, x):  # (B, 8) -> (B, 8)
        _misbehave("forward", self.at, self.action, self.marker)
        return self.fc(x)


_LAST = {}  # what build_model was told, for loss(), which sees no model


def build_model(*, at: str = "none", action: str = "exit0", marker: str = "") -> nn.Module:
    _misbehave("builder", at, action, marker)
    _LAST.update(at=at, action=action, marker=marker)
    return Net(at, action, marker)


def example_inputs(batch_size, seq_len, model):
    _misbehave("inputs", model.at, model.action, model.marker)
    return (torch.randn(batch_size, 8),)


def loss(output, inputs):
    _misbehave("loss", _LAST["at"], _LAST["action"], _LAST["marker"])
    return output.float().mean()
