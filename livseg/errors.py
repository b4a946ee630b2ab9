"""The one error type that means "the user must change something" (exit code 2).

Everything else that goes wrong is a failure of the job itself (exit code 1, with a traceback):
a numpy shape error deep in a metric is a bug or a broken input to report, not bad arguments.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Arguments, configuration or input data that cannot be used; the message says what to
    change (``--storage /x: cannot create it; choose another location``)."""


def describe_error(exc: BaseException) -> str:
    """One line for a report row: a usage error's own message (it names the file and the fix),
    anything else with its type, so that a bug does not read like bad input."""
    return str(exc) if isinstance(exc, UsageError) else f"{type(exc).__name__}: {exc}"
