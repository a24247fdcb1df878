"""One exception type for every mistake a learner can make (bad prompt, missing data, wrong checkpoint).

Its message is one line that says what went wrong and what to do; the CLI prints it without a traceback.
"""


class CourseError(Exception):
    """A user-facing error: `str(error)` is a single line that tells the learner what to do next."""
