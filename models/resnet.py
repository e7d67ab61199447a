"""ResNet image classifier (18/34/50/101/152), torchvision layout ("v1.5": stride in the 3x3 conv).

Architecture: He et al. 2016, "Deep Residual Learning for Image Recognition", Table 1 (stages of
[2,2,2,2] / [3,4,6,3] / [3,4,23,3] / [3,8,36,3] blocks; basic blocks for 18/34, bottlenecks with
expansion 4 for 50+), projection shortcuts (option B) when the shape changes, BatchNorm after every
conv (Ioffe & Szegedy 2015), global average pooling and a 1000-way fc.

Parameter count: ResNet-50 25,557,032 (torchvision ``resnet50`` IMAGENET1K_V1 card; the paper's
"25.6M"); ResNet-18 11,689,512; ResNet-101 44,549,160. Convs have no bias; each BatchNorm has 2C
parameters (running statistics are buffers).

Keys (``--set``): depth=50 (18, 34, 50, 101 or 152), width=64 (stem and first-stage width; stages
are width·[1, 2, 4, 8]), classes=1000, image_size=224.

``example_inputs`` ignores ``seq_len``: the input is a batch of RGB images (B, 3, image_size,
image_size). Within a stage, blocks after the first are identical and live in a ModuleList.
"""

import torch
import torch.nn.functional as F
from torch import nn

# He et al. 2016, Table 1: (block kind, blocks per stage)
DEPTHS = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
}


def conv_bn(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = conv_bn(c_in, width, 3, stride)
        self.conv2 = conv_bn(width, c_out, 3)
        self.shortcut = conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        y = F.relu(self.conv1(x))  # (B, width, H', W')
        y = self.conv2(y)  # (B, c_out, H', W')
        s = x if self.shortcut is None else self.shortcut(x)
        return F.relu(y + s)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand by 4 (He et al. 2016, Fig. 5 right)."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = conv_bn(c_in, width, 1)
        self.conv2 = conv_bn(width, width, 3, stride)
        self.conv3 = conv_bn(width, c_out, 1)
        self.shortcut = conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        y = F.relu(self.conv1(x))  # (B, width, H, W)
        y = F.relu(self.conv2(y))  # (B, width, H', W')
        y = self.conv3(y)  # (B, 4·width, H', W')
        s = x if self.shortcut is None else self.shortcut(x)
        return F.relu(y + s)


class Stage(nn.Module):
    """One stage: a first block that may change shape, then identical shape-preserving blocks."""

    def __init__(self, block, c_in: int, width: int, n_blocks: int, stride: int):
        super().__init__()
        self.first = block(c_in, width, stride)
        c_out = width * block.expansion
        self.blocks = nn.ModuleList(block(c_out, width, 1) for _ in range(n_blocks - 1))

    def forward(self, x):
        x = self.first(x)  # (B, c_out, H', W')
        for block in self.blocks:
            x = block(x)  # (B, c_out, H', W')
        return x


class ResNet(nn.Module):
    def __init__(self, depth: int, width: int, classes: int, image_size: int):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth={depth} is unsupported; use one of {sorted(DEPTHS)}")
        kind, counts = DEPTHS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.image_size = image_size
        self.stem = conv_bn(3, width, 7, stride=2)  # (B, width, H/2, W/2)
        stages, c_in = [], width
        for i, n in enumerate(counts):
            stages.append(Stage(block, c_in, width * 2**i, n, stride=1 if i == 0 else 2))
            c_in = width * 2**i * block.expansion
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, img):
        x = F.relu(self.stem(img))  # (B, w, H/2, W/2)
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # (B, w, H/4, W/4)
        for stage in self.stages:
            x = stage(x)  # (B, C_i, H/2^(i+2), W/2^(i+2))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, C)
        return self.fc(x)  # (B, K)


def _positive(**sizes) -> None:
    """Refuse sizes no model has (archcost types --set values; their domain is the builder's)."""
    for key, value in sizes.items():
        if value is not None and value < 1:
            raise ValueError(f"{key}={value} must be >= 1")


def build_model(
    *, depth: int = 50, width: int = 64, classes: int = 1000, image_size: int = 224
) -> nn.Module:
    _positive(width=width, classes=classes, image_size=image_size)
    return ResNet(depth, width, classes, image_size)


def example_inputs(batch_size: int, seq_len: int, model: nn.Module):
    """RGB images (batch_size, 3, image_size, image_size); ``seq_len`` is ignored."""
    s = model.image_size
    return (torch.randn(batch_size, 3, s, s),)


def loss(output, inputs):
    """Cross entropy against class 0 for every image (labels made here, not an input)."""
    labels = torch.zeros(output.shape[0], dtype=torch.long, device=output.device)  # (B,)
    return F.cross_entropy(output.float(), labels)
