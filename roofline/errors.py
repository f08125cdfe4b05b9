"""The one error type the front door turns into a one-line message (no traceback)."""
from __future__ import annotations

import math
import numbers
from contextlib import contextmanager

_MAX_GOT_CHARS = 80  # a bad value is quoted, not dumped: the message stays one readable line


class SpecError(ValueError):
    """A bad spec, shape or file: the message names the file (where one is involved), the field, the bad
    value and what is allowed, e.g. ``trace.csv:12: prompt_tokens: must be >= 1, got 'inf'``."""

    def __init__(self, field: str, problem: str, got: object = None, file: str | None = None):
        super().__init__(field, problem, got, file)  # the arguments, so that copies (SimPy re-raises one) rebuild it
        self.field, self.problem, self.got, self.file = field, problem, got, file
        where = ": ".join(part for part in (file, field) if part)
        text = f"{where}: {problem}" if where else problem
        if got is not None:
            quoted = repr(got)
            text += ", got " + (quoted if len(quoted) <= _MAX_GOT_CHARS else quoted[:_MAX_GOT_CHARS - 3] + "...")
        self.text = text.replace("\r", "\\r").replace("\n", "\\n")

    def __str__(self) -> str:
        return self.text

    def in_file(self, file: str) -> SpecError:
        """The same error as found in `file`, unless it already names a file of its own (a trace's line)."""
        return self if self.file else SpecError(self.field, self.problem, self.got, file)


@contextmanager
def errors_in(file: str):
    """Name `file` in every SpecError raised inside, unless it names a file of its own."""
    try:
        yield
    except SpecError as err:
        raise err.in_file(file) from None


def require_positive(field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value < math.inf):
        raise SpecError(field, "must be a finite number > 0", value)


def require_choice(field: str, value: object, allowed) -> None:
    if value not in allowed:
        raise SpecError(field, f"must be one of {', '.join(map(str, allowed))}", value)


def require_count(field: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SpecError(field, "must be a whole number >= 1", value)
