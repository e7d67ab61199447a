import torch
from torch import nn


def build_model():
    return nn.Linear(8, 4)


def example_inputs(batch_size, seq_len):
    return (torch.randn(batch_size, 5),)  # the model wants 8 features
