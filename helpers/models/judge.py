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
