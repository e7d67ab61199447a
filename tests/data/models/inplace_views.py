"""In-place ops on views, as DeepSeek-V3 attention (halves of q written into a new_empty) and
EfficientNet (SiLU(inplace=True) and an in-place squeeze-excitation scale on views of conv
maps) do them; the capture used to hang on each."""
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self, style):
        super().__init__()
        self.style = style
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 8)
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        if self.style == "mla":  # DeepSeek-V3 attention: halves written into a new_empty
            q = self.a(x)
            q_nope, q_pe = torch.split(q, [8, 8], dim=-1)
            full = q_pe.new_empty(*q.shape)
            full[..., :8] = q_nope
            full[..., 8:] = q_pe * 2
            return self.b(full)
        if self.style == "act_slice":  # in-place activation on a slice
            y = self.a(x)
            F.silu(y[..., :8], inplace=True)
            return self.b(y)
        if self.style == "conv_inplace":  # EfficientNet: SiLU(inplace) on views of conv maps
            n = x.shape[0] * x.shape[1]
            img = self.a(x).reshape(n, 4, 2, 2)
            y = self.bn(self.conv(img))
            F.silu(y, inplace=True)
            y2 = y.view(n, 8, 4)
            y2.mul_(torch.sigmoid(y2.mean(-1, keepdim=True)))
            return self.b(y2.flatten(1)[:, :16])
        raise ValueError(self.style)


def build_model(style="mla"):
    return Net(style)


def example_inputs(batch_size, seq_len):
    return (torch.randn(batch_size, seq_len, 16),)


def loss(out, inputs):
    return out.float().pow(2).mean()
