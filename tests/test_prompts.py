"""Reading prompts: the right digit for unseen phrasings; clear refusals for no digit, several, empty, too long."""
import pytest
import torch

from helpers.data.prompts import MAX_PROMPT_CHARS, digit_prompts, refusal_prompts
from helpers.digits import NO_DIGIT, SEVERAL_DIGITS
from helpers.errors import CourseError


def test_reader_reads_heldout_phrasings(bank):
    heldout = digit_prompts("heldout")
    predicted = bank.reader.classify(bank.embed(list(heldout.prompts)))
    assert (predicted == torch.tensor(heldout.digits)).float().mean() >= 0.97


def test_reader_refuses_heldout_non_digits_and_pairs(bank):
    none, several = refusal_prompts("heldout")
    assert (bank.reader.classify(bank.embed(none)) == NO_DIGIT).float().mean() >= 0.9
    assert (bank.reader.classify(bank.embed(several)) == SEVERAL_DIGITS).float().mean() >= 0.7


@pytest.mark.parametrize("prompt, digit", [("Print number 5", 5), ("Can you show me what five looks like?", 5),
                                           ("I want to draw a zero", 0), ("seven", 7), ("Draw a 1", 1)])
def test_interpret_examples(bank, prompt, digit):
    read, embedding = bank.interpret(prompt)
    assert read == digit and embedding.shape == (1, 384)


@pytest.mark.parametrize("prompt, message", [
    ("", "empty"), ("   ", "empty"),
    ("draw a cat", "does not ask for a digit; this model draws the digits 0-9"),
    ("3 or 4", "ambiguous"),
    ("x" * 10_000, f"10000 characters long; the limit is {MAX_PROMPT_CHARS}"),
])
def test_bad_prompts_get_one_line_messages(bank, prompt, message):
    with pytest.raises(CourseError, match=message) as error:
        bank.interpret(prompt)
    assert "\n" not in str(error.value)
