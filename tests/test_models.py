"""The bundled model files in models/: published parameter counts, training steps, fake tracing.

Expected parameter counts come from closed forms written out here from the papers' shapes (and
anchored to the published totals), never from the model code. Tiny instances then run a real CPU
training step (every parameter gets a gradient) and the same step under FakeTensorMode, the way
archcost traces them (built on the meta device, parameters swapped for fake tensors).
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from tests.conftest import MODELS, load_module

_CACHE: dict[str, object] = {}


def model_file(name: str):
    if name not in _CACHE:
        _CACHE[name] = load_module(MODELS / f"{name}.py")
    return _CACHE[name]


def meta_count(name: str, **cfg) -> int:
    with torch.device("meta"):
        model = model_file(name).build_model(**cfg)
    return sum(p.numel() for p in model.parameters())


# ---- closed forms ---------------------------------------------------------------------------

def seed_mlp_params(L=10, d_in=512, n=256, d_out=512):
    widths = [d_in] + [n] * (L - 1) + [d_out]
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


def gpt_params(L, h, V, P, f=None):
    """Tied head: token + position embeddings, per layer 2 LN + qkv + proj + 2 MLP, final LN."""
    f = f or 4 * h
    per_layer = 2 * 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + (h * f + f) + (f * h + h)
    return V * h + P * h + L * per_layer + 2 * h


def llama_params(L, h, a, kv, f, V):
    """Untied embedding and head, no biases; GQA k/v width kv·(h/a); SwiGLU has 3 matrices."""
    g = kv * (h // a)
    per_layer = 2 * h * h + 2 * h * g + 3 * h * f + 2 * h
    return L * per_layer + 2 * V * h + h


def mixtral_params(L, h, a, kv, f, V, E):
    g = kv * (h // a)
    per_layer = 2 * h * h + 2 * h * g + E * 3 * h * f + h * E + 2 * h
    return L * per_layer + 2 * V * h + h


def vit_params(image=224, p=16, L=12, h=768, f=3072, K=1000, c=3):
    n = (image // p) ** 2
    per_layer = 4 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * f + f) + (f * h + h)
    return (c * p * p * h + h) + h + (n + 1) * h + L * per_layer + 2 * h + (h * K + K)


def bert_params(L=12, h=768, f=3072, V=30522, P=512):
    embeddings = V * h + P * h + 2 * h + 2 * h
    per_layer = (3 * h * h + 3 * h) + (h * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h
    mlm_head = (h * h + h) + 2 * h + V
    return embeddings + L * per_layer + mlm_head


def resnet_params(depth=50, w=64, K=1000):
    """He et al. 2016 Table 1; conv k x k without bias plus BatchNorm (2 per channel)."""
    def conv_bn(ci, co, k):
        return ci * co * k * k + 2 * co

    bottleneck = depth >= 50
    counts = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth]
    exp = 4 if bottleneck else 1
    total, c_in = conv_bn(3, w, 7), w
    for i, n in enumerate(counts):
        width = w * 2**i
        c_out = width * exp
        for j in range(n):
            ci = c_in if j == 0 else c_out
            if bottleneck:
                total += conv_bn(ci, width, 1) + conv_bn(width, width, 3) + conv_bn(width, c_out, 1)
            else:
                total += conv_bn(ci, width, 3) + conv_bn(width, c_out, 3)
            if j == 0 and (i > 0 or ci != c_out):
                total += conv_bn(ci, c_out, 1)  # projection shortcut
        c_in = c_out
    return total + c_in * K + K


PUBLISHED = [
    # (file, config, closed form, published figure and source)
    ("seed_mlp", {}, seed_mlp_params(), 789_248),  # the article's shapes, counted by hand
    ("gpt2", {"seq_len": 1024}, gpt_params(12, 768, 50257, 1024), 124_439_808),  # nanoGPT
    ("llama", {"preset": "8b"}, llama_params(32, 4096, 32, 8, 14336, 128256), 8_030_261_248),
    ("llama", {"preset": "70b"}, llama_params(80, 8192, 64, 8, 28672, 128256), 70_553_706_496),
    ("llama", {"preset": "405b"}, llama_params(126, 16384, 128, 8, 53248, 128256),
     405_853_388_800),
    ("moe", {}, mixtral_params(32, 4096, 32, 8, 14336, 32000, 8), 46_702_792_704),  # "46.7B"
    ("vit", {}, vit_params(), 86_567_656),  # timm vit_base_patch16_224
    ("resnet", {}, resnet_params(50), 25_557_032),  # torchvision resnet50
    ("resnet", {"depth": 18}, resnet_params(18), 11_689_512),  # torchvision resnet18
    ("resnet", {"depth": 101}, resnet_params(101), 44_549_160),  # torchvision resnet101
    ("bert", {}, bert_params(), 109_514_298),  # Hugging Face BertForMaskedLM
]


@pytest.mark.parametrize(("name", "cfg", "formula", "published"), PUBLISHED)
def test_parameter_count_matches_published(name, cfg, formula, published):
    assert formula == published  # the closed form reproduces the published figure
    assert meta_count(name, **cfg) == published


def test_gpt3_175b_by_overrides():
    cfg = dict(layers=96, hidden=12288, heads=96, vocab=51200, ffn=49152, seq_len=2048)
    n = meta_count("gpt2", **cfg)
    assert n == gpt_params(96, 12288, 51200, 2048, 49152)
    assert abs(n / 175.0e9 - 1) < 0.01  # Brown et al. 2020, Table 2.1: "175.0B"


def test_gpt2_positions_follow_seq_len_unless_block_size_given():
    gpt2 = model_file("gpt2")
    with torch.device("meta"):
        assert gpt2.build_model(seq_len=4096).wpe.num_embeddings == 4096
        assert gpt2.build_model(seq_len=64, block_size=1024).wpe.num_embeddings == 1024
        untied = gpt2.build_model(seq_len=1024, tie_weights=False)
    assert sum(p.numel() for p in untied.parameters()) == 124_439_808 + 50257 * 768


def test_bert_rejects_seq_len_beyond_positions():
    with pytest.raises(ValueError, match="max_positions"):
        model_file("bert").build_model(seq_len=1024)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="preset"):
        model_file("llama").build_model(preset="7b")


# ---- the convention ------------------------------------------------------------------------

NAMES = ["seed_mlp", "gpt2", "llama", "moe", "deepseek_v3", "vit", "resnet", "bert", "gptj",
         "falcon"]

TINY = {
    "seed_mlp": dict(layers=4, d_in=16, hidden=8, d_out=16),
    "gpt2": dict(layers=2, hidden=32, heads=4, vocab=97, seq_len=16),
    "llama": dict(preset="tiny"),
    "moe": dict(preset="tiny"),
    "deepseek_v3": dict(preset="tiny"),
    "vit": dict(image_size=32, patch=8, layers=2, hidden=32, heads=4, ffn=64, classes=10),
    "resnet": dict(depth=50, width=8, classes=10, image_size=32),
    "bert": dict(layers=2, hidden=32, heads=4, ffn=64, vocab=97, max_positions=32, seq_len=16),
    "gptj": dict(preset="tiny"),
    "falcon": dict(preset="tiny"),
}
B, S = 2, 16


@pytest.mark.parametrize("name", NAMES)
def test_builder_keys_are_explicit_keywords(name):
    params = inspect.signature(model_file(name).build_model).parameters.values()
    for p in params:
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, p.name
        assert p.default is None or type(p.default) in (int, float, bool, str), p.name


def _inputs(mod, model, cfg):
    """Call example_inputs the way archcost's loader does: model and builder keys by name."""
    params = inspect.signature(mod.example_inputs).parameters
    kwargs = {k: v for k, v in cfg.items() if k in params and k not in ("batch_size", "seq_len")}
    if "model" in params:
        kwargs["model"] = model
    return mod.example_inputs(B, S, **kwargs)


def _step(mod, model, cfg):
    inputs = _inputs(mod, model, cfg)
    out = model(**inputs) if isinstance(inputs, dict) else model(*inputs)
    loss = mod.loss(out, inputs)
    assert loss.dim() == 0
    loss.backward()
    return loss


def _repeated(name, model):
    """The ModuleLists whose members a tracer may run once and count many times."""
    if name == "seed_mlp":
        return [list(model.layers)[1:-1]]  # hidden -> hidden; first and last change width
    if name == "resnet":
        return [list(stage.blocks) for stage in model.stages]  # blocks after each stage's first
    if name == "deepseek_v3":
        return [list(model.layers)[:1], list(model.layers)[1:]]  # the dense layer, the MoE layers
    return [list(model.layers)]


@pytest.mark.parametrize("name", NAMES)
def test_tiny_training_step_on_cpu(name):
    """Forward, loss, backward: every parameter gets a gradient; repeated blocks map x -> x-shaped."""
    torch.manual_seed(0)
    mod = model_file(name)
    model = mod.build_model(**TINY[name])
    groups = _repeated(name, model)
    seen = []

    def same_shape(_m, args, out):
        seen.append(isinstance(out, torch.Tensor) and out.shape == args[0].shape)

    for blocks in groups:
        assert len(blocks) >= 1
        sig = {(type(b), tuple(tuple(p.shape) for p in b.parameters())) for b in blocks}
        assert len(sig) == 1  # one class, one set of parameter shapes
        for b in blocks:
            b.register_forward_hook(same_shape)
    loss = _step(mod, model, TINY[name])
    assert torch.isfinite(loss)
    assert seen and all(seen)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


_LM_SIZES = [("gpt2", dict(layers=2, hidden=256, heads=8, vocab=4096, seq_len=32)),
             ("bert", dict(layers=2, hidden=256, heads=8, ffn=1024, vocab=4096,
                           max_positions=32, seq_len=32)),
             ("falcon", dict(preset="tiny", hidden=256, heads=8, kv_heads=2, vocab=4096)),
             ("llama", TINY["llama"]), ("moe", TINY["moe"]), ("gptj", TINY["gptj"])]


@pytest.mark.parametrize("name, cfg", _LM_SIZES, ids=[n for n, _ in _LM_SIZES])
def test_language_models_start_near_uniform_and_step_on_normal_floats(name, cfg):
    """Initialised as published, a language model's first cross entropy is that of a
    near-uniform guess, ln(vocabulary) (closed form), within 1 nat; and no op of a training step
    puts out a subnormal float (brute force over every op's outputs), which an x86 core
    computes with many times slower than a normal one. With PyTorch's default N(0, 1)
    embeddings under a tied head GPT-2 started at ~170 and BERT at ~58, their softmax mostly
    subnormal."""
    from torch.utils._python_dispatch import TorchDispatchMode

    tiny = torch.finfo(torch.float32).tiny
    found: dict[str, int] = {}

    class Subnormals(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.numel():
                    n = int(((t != 0) & (t.abs() < tiny)).sum())
                    if n:
                        found[str(func)] = found.get(str(func), 0) + n
            return out

    torch.manual_seed(0)
    mod = model_file(name)
    model = mod.build_model(**cfg)
    inputs = _inputs(mod, model, cfg)
    with Subnormals():
        out = model(**inputs) if isinstance(inputs, dict) else model(*inputs)
        loss = mod.loss(out, inputs)
        loss.backward()
    logits = out if isinstance(out, torch.Tensor) else out[0]
    assert abs(loss.item() - math.log(logits.shape[-1])) < 1.0, loss.item()
    assert not found, found


def test_moe_router_and_experts_learn():
    torch.manual_seed(0)
    mod = model_file("moe")
    model = mod.build_model(preset="tiny")
    _step(mod, model, {})
    moe = model.layers[0].moe
    for p in (moe.gate.weight, moe.w1, moe.w2, moe.w3):
        assert p.grad is not None and p.grad.abs().sum() > 0


def _dense_moe_reference(moe, x):
    """Loop over tokens and their top-k experts (no capacity): Mixtral Eq. 1 written directly."""
    xf = x.reshape(-1, x.shape[-1])
    out = torch.zeros_like(xf)
    logits = xf @ moe.gate.weight.t()
    top, idx = logits.topk(moe.top_k, dim=-1)
    w = torch.softmax(top, dim=-1)
    for n in range(xf.shape[0]):
        for j in range(moe.top_k):
            e = int(idx[n, j])
            h = torch.nn.functional.silu(xf[n] @ moe.w1[e]) * (xf[n] @ moe.w3[e])
            out[n] += w[n, j] * (h @ moe.w2[e])
    return out.view_as(x)


def test_moe_static_dispatch_matches_dense_reference_when_nothing_drops():
    torch.manual_seed(0)
    mod = model_file("moe")
    E, k = 4, 2
    model = mod.build_model(preset="tiny", capacity_factor=E / k)  # C = N: nothing can drop
    moe = model.layers[0].moe
    x = torch.randn(2, 5, 64)
    assert moe.capacity(10) == 10
    torch.testing.assert_close(moe(x), _dense_moe_reference(moe, x))


def test_moe_capacity_drops_overflow_tokens():
    torch.manual_seed(0)
    mod = model_file("moe")
    model = mod.build_model(preset="tiny", capacity_factor=0.25)
    moe = model.layers[0].moe
    x = torch.randn(2, 8, 64)
    assert moe.capacity(16) == math.ceil(2 * 16 / 4 * 0.25)  # 2 slots per expert
    y = moe(x)
    # at most E·C = 8 of the 32 token-choices are served, so some token gets nothing at all
    assert y.shape == x.shape
    assert (y.abs().sum(-1) == 0).any()


def _to_fake(model, dtype):
    """Swap meta parameters/buffers for empty fake tensors, as archcost's tracer does."""
    for m in model.modules():
        for n, p in list(m._parameters.items()):
            if p is not None:
                t = torch.empty(p.shape, dtype=dtype if p.is_floating_point() else p.dtype)
                m._parameters[n] = nn.Parameter(t, requires_grad=p.requires_grad)
        for n, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[n] = torch.zeros(b.shape, dtype=dtype if b.is_floating_point() else b.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_tiny_training_step_under_fake_tensors(name, dtype):
    mod = model_file(name)
    with torch.device("meta"):
        model = mod.build_model(**TINY[name])
    with FakeTensorMode(allow_non_fake_inputs=False):
        _to_fake(model, dtype)
        inputs = _inputs(mod, model, TINY[name])
        inputs = tuple(x.to(dtype) if x.is_floating_point() else x for x in inputs)
        out = model(*inputs)
        loss = mod.loss(out, inputs)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())


def test_moe_expert_flops_follow_top_k_not_expert_count():
    """E·C = ceil(top_k·N·capacity_factor) rows go through the experts, whatever E is."""
    from torch.utils.flop_counter import FlopCounterMode

    def expert_flops(experts):
        with torch.device("meta"):
            moe = model_file("moe").build_model(preset="tiny", experts=experts).layers[0].moe
            x = torch.randn(2, 8, 64)
            with FlopCounterMode(display=False) as fc:
                moe(x)
        return fc.get_flop_counts()["Global"][torch.ops.aten.bmm]

    n_rows = 2 * 16  # top_k · N tokens, capacity_factor 1
    assert expert_flops(4) == expert_flops(8) == 3 * 2 * n_rows * 64 * 128
