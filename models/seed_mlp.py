"""The founding article's worked example: a fully connected network of 10 layers.

The article models a network M by its computation graph and estimates, for L=10 layers, input and
output width D=H=512 and N=256 units per layer, compute C = O(L·N·D²·H) ≈ 1e10, storage
S = O(L·N·H + L·N·D) ≈ 2e8 and communication C_comm = O(L·N·D + L·N) ≈ 1.6e8 (loose orders of
magnitude; see /work/shared/REFERENCES.md, "The founding article"). archcost computes the exact
figures: a dense layer costs 2·B·d_in·d_out FLOPs forward.

Shape: layer 1 is 512 -> 256, layers 2..9 are 256 -> 256, layer 10 is 256 -> 512, ReLU between.
Parameter count (bias=True): (512·256 + 256) + 8·(256·256 + 256) + (256·512 + 512) = 789,248.

Keys (``--set``): layers=10, d_in=512, hidden=256, d_out=512, bias=True.
``example_inputs`` ignores ``seq_len``: the input is one (batch_size, d_in) vector per sample.
"""

import torch
import torch.nn.functional as F
from torch import nn


class SeedMLP(nn.Module):
    def __init__(self, layers: int, d_in: int, hidden: int, d_out: int, bias: bool):
        super().__init__()
        if layers < 2:
            raise ValueError(f"layers={layers}: the seed MLP needs at least 2 layers (in and out)")
        widths = [d_in] + [hidden] * (layers - 1) + [d_out]
        self.d_in = d_in
        # the middle layers (hidden -> hidden) are identical, so a tracer can run one, count many
        self.layers = nn.ModuleList(
            nn.Linear(w_in, w_out, bias=bias) for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)
        )

    def forward(self, x):
        # x: (B, d_in)
        for i, layer in enumerate(self.layers):
            x = layer(x)  # (B, width_i)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x  # (B, d_out)


def _positive(**sizes) -> None:
    """Refuse sizes no model has (archcost types --set values; their domain is the builder's)."""
    for key, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"{key}={value} must be >= 1")


def build_model(
    *, layers: int = 10, d_in: int = 512, hidden: int = 256, d_out: int = 512, bias: bool = True
) -> nn.Module:
    _positive(d_in=d_in, hidden=hidden, d_out=d_out)
    return SeedMLP(layers, d_in, hidden, d_out, bias)


def example_inputs(batch_size: int, seq_len: int, model: nn.Module):
    """One (batch_size, d_in) float input; ``seq_len`` is ignored (no sequence axis)."""
    return (torch.randn(batch_size, model.d_in),)


def loss(output, inputs):
    """Mean squared output: a scalar that reaches every parameter."""
    return output.float().pow(2).mean()
