import torch


def build_model(width: int = 4):
    raise ValueError("width must be even")


def example_inputs(batch_size, seq_len):
    return (torch.randn(batch_size, 4),)
