"""Loops until a value computed from the weights turns negative: never, on the values a trace
assumes (a float read as 1), so only the watchdog ends the capture."""
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        while y.abs().sum().item() > 0:
            y = y * 0.5
        return y


def build_model():
    return Net()


def example_inputs(batch_size, seq_len):
    return (torch.randn(batch_size, 4),)
