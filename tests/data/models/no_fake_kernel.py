"""Uses a custom op that has a CPU kernel but no fake (meta) kernel."""
import torch
from torch import nn

_lib = torch.library.Library("archcost_test", "DEF")
_lib.define("twice(Tensor x) -> Tensor")
_lib.impl("twice", lambda x: x * 2, "CPU")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.ops.archcost_test.twice(self.fc(x))


def build_model():
    return Net()


def example_inputs(batch_size, seq_len):
    return (torch.randn(batch_size, 4),)
