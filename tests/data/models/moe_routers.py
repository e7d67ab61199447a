"""Small mixture-of-experts layers routed the ways real code routes: the per-expert loop of
`transformers` (one_hot, nonzero, torch.where, boolean-mask rows), a loop on counts read with
.item(), and sorted tokens through one grouped GEMM (aten._grouped_mm)."""
import torch
import torch.nn.functional as F
from torch import nn


class Experts(nn.Module):
    def __init__(self, hidden, ffn, experts):
        super().__init__()
        self.w_in = nn.Parameter(torch.randn(experts, hidden, ffn) * 0.1)
        self.w_out = nn.Parameter(torch.randn(experts, ffn, hidden) * 0.1)


class MoE(nn.Module):
    def __init__(self, style, hidden=16, ffn=32, experts=4, top_k=2):
        super().__init__()
        self.style, self.experts, self.top_k = style, experts, top_k
        self.gate = nn.Linear(hidden, experts, bias=False)
        self.fc_in = nn.ModuleList(nn.Linear(hidden, ffn, bias=False) for _ in range(experts))
        self.fc_out = nn.ModuleList(nn.Linear(ffn, hidden, bias=False) for _ in range(experts))
        self.stacked = Experts(hidden, ffn, experts)

    def forward(self, x):
        b, t, h = x.shape
        x = x.reshape(-1, h)
        probs = F.softmax(self.gate(x), dim=-1)
        weights, picked = torch.topk(probs, self.top_k, dim=-1)
        out = torch.zeros_like(x)
        if self.style == "hf_loop":  # transformers Mixtral/Qwen-MoE eager path
            mask = F.one_hot(picked, self.experts).permute(2, 1, 0)  # (E, k, N)
            hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
            for e in hit:
                slot, rows = torch.where(mask[e].squeeze(0))
                h1 = F.silu(self.fc_in[e](x[rows]))
                y = self.fc_out[e](h1) * weights[rows, slot, None]
                out.index_add_(0, rows, y.to(out.dtype))
        elif self.style == "item_loop":  # counts read with .item()
            for e in range(self.experts):
                sel = picked == e  # (N, k)
                if sel.sum().item() == 0:
                    continue
                rows = sel.any(dim=-1)
                w = (weights * sel).sum(dim=-1, keepdim=True)[rows]
                out[rows] += self.fc_out[e](F.silu(self.fc_in[e](x[rows]))) * w
        elif self.style == "grouped":  # sorted tokens, one grouped GEMM
            flat = picked.reshape(-1)
            order = flat.argsort()
            counts = torch.bincount(flat, minlength=self.experts)
            offs = counts.cumsum(0).to(torch.int32)
            xs = x.repeat_interleave(self.top_k, dim=0)[order]
            h1 = F.silu(torch._grouped_mm(xs, self.stacked.w_in, offs=offs))
            y = torch._grouped_mm(h1, self.stacked.w_out, offs=offs)
            y = y * weights.reshape(-1, 1)[order]
            out = out.index_add(0, order // self.top_k, y)
        return out.reshape(b, t, h)


def build_model(style="hf_loop", hidden=16, ffn=32, experts=4, top_k=2):
    return MoE(style, hidden, ffn, experts, top_k)


def example_inputs(batch_size, seq_len):
    return (torch.randn(batch_size, seq_len, 16),)


def loss(out, inputs):
    return out.float().pow(2).mean()
