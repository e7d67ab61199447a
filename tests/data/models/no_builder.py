import torch


def example_inputs(batch_size, seq_len):
    return (torch.randn(batch_size, 4),)
