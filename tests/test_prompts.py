"""Reading prompts: the right digit for unseen phrasings; clear refusals for no digit, several, empty, too long."""
import pytest
import torch

from helpers.data.prompts import digit_prompts, refusal_prompts
from helpers.text.prompts import MAX_PROMPT_CHARS
from helpers.digits import NO_DIGIT, SEVERAL_DIGITS
from helpers.errors import CourseError


# The README's "Refusing prompts" numbers, asserted as stated there.
def test_reader_reads_heldout_phrasings(bank):
    heldout = digit_prompts("heldout")
    predicted = bank.reader.classify(bank.embed(list(heldout.prompts)))
    assert len(heldout.prompts) == 200
    assert (predicted == torch.tensor(heldout.digits)).float().mean() == 1.0  # README: reads 100% of 200


def test_reader_refuses_heldout_non_digits_and_pairs(bank):
    none, several = refusal_prompts("heldout")
    assert len(none) == 105 and len(several) == 90
    assert (bank.reader.classify(bank.embed(none)) == NO_DIGIT).float().mean() == 1.0  # README: refuses 100% of 105
    assert (bank.reader.classify(bank.embed(several)) == SEVERAL_DIGITS).float().mean() >= 0.82  # flags 82% of 90


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


def test_every_model_refuses_with_the_one_prompt_check():
    from helpers import sketch
    from helpers.faces import read_prompt
    from helpers.text.prompts import check_prompt

    assert check_prompt("  Print number 5 ", "x") == "Print number 5"
    assert check_prompt("y" * MAX_PROMPT_CHARS, "x") == "y" * MAX_PROMPT_CHARS
    for refuse in (read_prompt, sketch.check_sketch_prompt, lambda p: check_prompt(p, "x")):
        with pytest.raises(CourseError, match=f"{MAX_PROMPT_CHARS + 1} characters long; the limit is {MAX_PROMPT_CHARS}"):
            refuse("a smiling woman " + "y" * (MAX_PROMPT_CHARS - 15))
        for empty in ("", "  \n", None):
            with pytest.raises(CourseError, match="^the prompt is empty: "):
                refuse(empty)
