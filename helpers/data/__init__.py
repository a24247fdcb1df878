"""Datasets of the course (bottom layer: depends on nothing but config)."""
from helpers.data.captions import (PHRASES, ContradictoryPrompt, caption, captions_for, describe_vocabulary,
                                   parse_prompt, zero_shot_prompts)
from helpers.data.celeba import ATTRIBUTES, FaceSplits, load_celeba, synthetic_faces, to_float, to_uint8
from helpers.data.cifar10 import (CIFAR10_CLASSES, ImageDataset, ImageSplits, load_cifar10, resize_images,
                                  synthetic_cifar)
from helpers.data.mnist import DigitSplits, load_mnist
from helpers.data.prompts import DIGIT_WORDS, PromptSet, digit_prompts

__all__ = ["DigitSplits", "load_mnist", "DIGIT_WORDS", "PromptSet", "digit_prompts",
           "ATTRIBUTES", "FaceSplits", "load_celeba", "synthetic_faces", "to_float", "to_uint8",
           "PHRASES", "ContradictoryPrompt", "caption", "captions_for", "describe_vocabulary", "parse_prompt",
           "zero_shot_prompts",
           "CIFAR10_CLASSES", "ImageDataset", "ImageSplits", "load_cifar10", "resize_images", "synthetic_cifar"]
