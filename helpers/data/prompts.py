"""Prompt templates for the text-prompted digit CVAE (notebook 02).

Each template is filled with the digit as a word ("five") and as a numeral ("5"), so every digit has
2 x len(TEMPLATES) phrasings. The templates are split once: the model trains on TRAIN_TEMPLATES and
is judged on HELDOUT_TEMPLATES, wordings it never saw.
"""
from __future__ import annotations

from dataclasses import dataclass

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

TRAIN_TEMPLATES = (
    "Print number {}",
    "Generate digit {}",
    "Draw a {}",
    "Show me a {}",
    "I want to draw a {}",
    "Can you show me what {} looks like?",
    "Please generate the digit {}",
    "Draw a handwritten {}",
    "Write the number {}",
    "Make an image of the digit {}",
    "{}",
    "the digit {}",
    "number {}",
    "a handwritten {}",
    "Give me a {}",
    "Render the numeral {}",
    "Could you write {} for me?",
    "Produce a picture of {}",
    "I need the number {}",
    "Sketch the digit {}",
    "Let me see a {}",
    "Create a handwritten number {}",
    "What does {} look like when written by hand?",
    "Paint the figure {}",
    "Display digit {}",
    "Scribble a {}",
    "One {}, please",
    "Can I get a {}?",
    "Generate an MNIST {}",
    "Handwrite {}",
)

HELDOUT_TEMPLATES = (
    "Please draw the number {}",
    "Show the digit {}",
    "I would like to see a {}",
    "Write down a {} by hand",
    "Can you make a {}?",
    "Illustrate the number {}",
    "Generate a picture of the digit {}",
    "An image of {}",
    "Give me the numeral {}",
    "Pen a quick {}",
)


def fill(template: str, digit: int, as_word: bool) -> str:
    return template.format(DIGIT_WORDS[digit] if as_word else str(digit))


@dataclass(frozen=True)
class PromptSet:
    """Parallel lists: prompts[i] asks for digits[i]."""

    prompts: tuple[str, ...]
    digits: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.prompts)

    def for_digit(self, digit: int) -> list[str]:
        return [p for p, d in zip(self.prompts, self.digits) if d == digit]


def digit_prompts(split: str = "train") -> PromptSet:
    """All phrasings of all ten digits for `split` ('train' or 'heldout'), words and numerals."""
    templates = {"train": TRAIN_TEMPLATES, "heldout": HELDOUT_TEMPLATES}.get(split)
    if templates is None:
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    prompts, digits = [], []
    for digit in range(10):
        for template in templates:
            for as_word in (True, False):
                prompts.append(fill(template, digit, as_word))
                digits.append(digit)
    return PromptSet(tuple(prompts), tuple(digits))


# Prompts a digit model must refuse, used to teach the prompt reader what "no digit" and "several digits"
# look like. Things and pairs are split like the templates: the reader is checked on ones it never saw.
NON_DIGIT_THINGS = {
    "train": ("cat", "dog", "house", "tree", "car", "face", "flower", "bird", "the letter A", "the letter B",
              "circle", "square", "star", "banana", "apple", "horse", "boat", "sun", "mountain", "chair",
              "robot", "heart", "fish", "bicycle", "person", "cloud", "word", "smiley", "the alphabet", "shoe"),
    "heldout": ("giraffe", "rocket", "castle", "the letter Q", "triangle", "pizza", "guitar", "snowman", "lamp", "dragon"),
}
OFF_TOPIC = {
    "train": ("hello", "how are you?", "what's the weather like today?", "tell me a joke", "sing me a song",
              "thank you", "what time is it?", "translate this to French", "who won the game?", "good morning",
              "asdf", "ok", "help", "I like trains", "The quick brown fox jumps over the lazy dog"),
    "heldout": ("what is the capital of Italy?", "play some music", "goodbye", "lorem ipsum dolor", "why is the sky blue?"),
}
PAIR_PATTERNS = {
    "train": ("{} or {}", "{} and {}", "{} and a {}", "either {} or {}", "{}, {}", "{} then {}", "both {} and {}",
              "{} with {}", "{} next to {}", "{} followed by {}", "{} & {}", "{} or maybe {}", "{} versus {}",
              "{} and also {}", "{} together with {}", "{} beside a {}"),
    "heldout": ("a {} or a {}", "{} as well as {}", "{} plus {}"),
}


def refusal_prompts(split: str = "train", seed: int = 0) -> tuple[list[str], list[str]]:
    """(prompts naming no digit, prompts naming two digits) for `split`, built from the templates of that split."""
    import random

    templates = {"train": TRAIN_TEMPLATES, "heldout": HELDOUT_TEMPLATES}[split]
    rng = random.Random(seed)
    none = [template.format(thing) for template in templates for thing in NON_DIGIT_THINGS[split]]
    none += list(OFF_TOPIC[split])
    several = []
    for template in templates:
        for pattern in PAIR_PATTERNS[split]:
            for _ in range(3):
                a, b = rng.sample(range(10), 2)
                as_word = rng.random() < 0.5
                pair = pattern.format(*(DIGIT_WORDS[d] if as_word else str(d) for d in (a, b)))
                several.append(template.format(pair))
    return none, several
