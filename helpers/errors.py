"""One exception type for every mistake a learner can make (bad prompt, missing data, wrong checkpoint).

Its message is one line that says what went wrong and what to do; the CLI prints it without a traceback.
"""


class CourseError(Exception):
    """A user-facing error: `str(error)` is a single line that tells the learner what to do next."""


class Unavailable(CourseError):
    """A download that cannot happen now: offline, the host out of reach, or the transfer failed. `reason` is the
    short why ("offline (COURSE_OFFLINE or HF_HUB_OFFLINE is set)"); quick mode falls back to a procedural stand-in
    on it, full mode shows the whole message."""

    def __init__(self, reason: str, hint: str = ""):
        super().__init__(f"{reason}; {hint}" if hint else reason)
        self.reason = reason
