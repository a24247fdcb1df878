"""Datasets of the course (bottom layer: depends on nothing but config)."""
from helpers.data.mnist import DigitSplits, load_mnist
from helpers.data.prompts import DIGIT_WORDS, PromptSet, digit_prompts

__all__ = ["DigitSplits", "load_mnist", "DIGIT_WORDS", "PromptSet", "digit_prompts"]
