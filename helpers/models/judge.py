"""A small CNN that recognises digits: the judge of generated samples (notebooks 01-02, metrics)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from helpers.models.vae import check_image_size


@dataclass
class DigitJudgeConfig:
    width: int = 32
    num_classes: int = 10
    image_size: int = 28
    dropout: float = 0.25


class DigitJudge(nn.Module):
    def __init__(self, config: DigitJudgeConfig):
        super().__init__()
        self.config = config
        w = config.width

        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, S/2, S/2)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, S/4, S/4)
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(2 * w * (config.image_size // 4) ** 2, 128), nn.ReLU(),
            nn.Dropout(config.dropout), nn.Linear(128, config.num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_image_size(images, 1, self.config.image_size)
        return self.head(self.features(images))  # (B, num_classes) logits


# ---------------------------------------------------------------------------------------------- CIFAR-10
@dataclass
class CifarJudgeConfig:
    """A small ResNet for 32x32 (or larger) colour images, in one of two layouts (`design`):

    - "resnet" (the quick judge): a stem, then three stages of residual blocks with width, 2*width and 4*width
      channels; the second and third stages halve the resolution, and so does the first one when `first_stride`
      is 2 (four times cheaper), as in the CIFAR ResNets of He et al. 2016.
    - "resnet9" (the strong judge of real photos): Page's ResNet-9 (the DAWNBench CIFAR-10 entry, 2018) at
      width/64 of its channels: conv(w), then conv(2w)+pool+residual, conv(4w)+pool, conv(8w)+pool+residual,
      global max-pool. Each stage convolves *before* it pools, so the expensive layers see full resolution
      once, and it has twice the channels per multiply-add of "resnet": at width 16 it costs what "resnet" costs
      at width 24 (~25M multiply-adds per 32x32 image) with 2.4 times the weights (0.41M)."""

    width: int = 32
    num_classes: int = 10
    image_size: int = 32
    blocks: int = 1  # residual blocks per stage
    dropout: float = 0.0  # before the last layer
    first_stride: int = 2  # "resnet" only; 1: the first stage runs at the stem's resolution
    design: str = "resnet"  # or "resnet9"

    def __post_init__(self):
        if self.design not in ("resnet", "resnet9"):
            raise ValueError(f"unknown judge design {self.design!r}; choose resnet or resnet9")

    @property
    def feature_dim(self) -> int:
        return (8 if self.design == "resnet9" else 4) * self.width


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut: the block only has to learn a correction to its input, which is
    what lets gradients reach the first layers. A 1x1 conv shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),  # BN adds the bias
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]


class Residual(nn.Module):
    """x + two conv-BN-ReLU layers at x's own shape (ResNet-9's residual stages)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(channels, channels), *conv_bn_relu(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def resnet9_layers(width: int, stem_stride: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """Stem, stages and pool of the "resnet9" design: 32 -> 32 -> 16 -> 8 -> 4 pixels across, then max over them."""
    w = width
    stem = nn.Sequential(nn.Conv2d(3, w, 3, stride=stem_stride, padding=1, bias=False), nn.BatchNorm2d(w),
                         nn.ReLU(inplace=True))
    stages = nn.Sequential(*conv_bn_relu(w, 2 * w), nn.MaxPool2d(2), Residual(2 * w),
                           *conv_bn_relu(2 * w, 4 * w), nn.MaxPool2d(2),
                           *conv_bn_relu(4 * w, 8 * w), nn.MaxPool2d(2), Residual(8 * w))
    return stem, stages, nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())


class CifarJudge(nn.Module):
    """Classifies (B, 3, S, S) images in [-1, 1] into `num_classes`; `features` is the pooled penultimate
    layer (B, config.feature_dim), the representation FID/KID compare when no Inception network is at hand.

    The stem halves images larger than 32 pixels first, so 64x64 costs about as much as 32x32; the adaptive
    average pool at the end makes any size work."""

    def __init__(self, config: CifarJudgeConfig):
        super().__init__()
        self.config = config
        w, stem_stride = config.width, 2 if config.image_size >= 64 else 1
        if config.design == "resnet9":
            self.stem, self.stages, self.pool = resnet9_layers(w, stem_stride)
            self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.feature_dim, config.num_classes))
            return
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, stride=stem_stride, padding=1, bias=False),
                                  nn.BatchNorm2d(w), nn.ReLU(inplace=True))
        stages, channels = [], w
        strides = (config.first_stride, 2, 2)  # 32 -> 16 -> 8 -> 4 pixels across (32 -> 32 -> 16 -> 8 with 1)
        for out_channels, stride in zip((w, 2 * w, 4 * w), strides):
            for index in range(config.blocks):
                stages.append(ResidualBlock(channels, out_channels, stride=stride if index == 0 else 1))
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(channels, config.num_classes))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        check_image_size(images, 3, self.config.image_size)
        return self.pool(self.stages(self.stem(images)))  # (B, feature_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))  # (B, num_classes) logits
