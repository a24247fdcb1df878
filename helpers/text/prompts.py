"""The one check every prompt passes before any model reads it."""
from __future__ import annotations

from helpers.errors import CourseError

# Every model's limit. Refused, not truncated: a cut prompt may lose the very words that say what to draw, and no
# prompt of the course needs more (the encoders read at most 128 tokens, our CLIPs fewer).
MAX_PROMPT_CHARS = 300


def check_prompt(prompt: object, example: str) -> str:
    """The prompt without its surrounding spaces, or a one-line CourseError for an empty (or non-text) prompt or
    one over MAX_PROMPT_CHARS. `example` ends the message about an empty one: what this model wants instead."""
    text = prompt.strip() if isinstance(prompt, str) else ""
    if not text:
        raise CourseError(f"the prompt is empty: {example}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise CourseError(f"the prompt is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}")
    return text
