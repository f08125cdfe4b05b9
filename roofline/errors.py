"""The one error type the front door turns into a one-line message (no traceback)."""
from __future__ import annotations

import difflib
import math
import numbers
import re
from contextlib import contextmanager

_MAX_GOT_CHARS = 80  # a bad value is quoted, not dumped: the message stays one readable line
_CONTAINERS = ((dict, "mapping", "key"), (list, "list", "item"), (tuple, "list", "item"), (set, "set", "item"),
               (frozenset, "set", "item"))


class HugeNumber(int):
    """A whole number written with more digits than Python converts (4,300): held as +-10^4300, beyond the
    range of every field, and quoted by how many digits it was written with."""

    def __new__(cls, digits: int, negative: bool = False):
        number = super().__new__(cls, -10 ** 4300 if negative else 10 ** 4300)
        number.digits = digits
        return number

    def __repr__(self) -> str:
        return f"a {self.digits}-digit {'negative ' if self < 0 else ''}number"

    def __format__(self, spec: str) -> str:
        return repr(self)

    __str__ = __repr__


def excerpt(value, limit: int = _MAX_GOT_CHARS) -> str:
    """`value` as an error quotes it: its repr, cut to `limit` characters. The excerpt costs no more than
    itself to build, however large the value (a YAML alias bomb expands to 10^9 items, Python refuses to
    print a 5,000-digit number): a number too long to show is "a 5001-digit number", a container "a list of
    10 items"."""
    if isinstance(value, HugeNumber):
        return repr(value)
    if isinstance(value, str):
        quoted = repr(value[:limit])
    else:
        shown = _bounded_repr(value, limit)
        if shown is not None:
            return shown
        if isinstance(value, int) and not isinstance(value, bool):
            return f"a {decimal_digits(value)}-digit number"
        for cls, kind, item in _CONTAINERS:
            if isinstance(value, cls):
                return f"a {kind} of {len(value)} {item}{'' if len(value) == 1 else 's'}"
        quoted = repr(value)
    return quoted if len(quoted) <= limit else quoted[:limit - 3] + "..."


def _bounded_repr(value, budget: int) -> str | None:
    """repr(value) if it takes at most `budget` characters, else None; never built further than that (so a list
    that holds itself, as a YAML alias can make one, ends when the budget does)."""
    if budget < 2:
        return None
    if isinstance(value, (dict, list, tuple)) or (isinstance(value, (set, frozenset)) and value):
        pairs = value.items() if isinstance(value, dict) else ((item,) for item in value)
        parts, used = [], 2
        for pair in pairs:
            shown = [_bounded_repr(part, budget - used) for part in pair]
            if None in shown or used > budget:
                return None
            parts.append(": ".join(shown))
            used += len(parts[-1]) + 2
        text = ", ".join(parts) + ("," if isinstance(value, tuple) and len(parts) == 1 else "")
        opening, closing = {list: "[]", tuple: "()"}.get(type(value), "{}")
        shown = opening + text + closing
    elif isinstance(value, int) and not isinstance(value, bool) and decimal_digits(value) > budget:
        return None
    elif isinstance(value, str) and len(value) > budget:
        return None
    else:
        shown = repr(value)
    return shown if len(shown) <= budget else None


def decimal_digits(n: int) -> int:
    """Decimal digits of |n|, without printing n (Python refuses to print more than 4,300 digits)."""
    n = abs(n)
    digits = max(1, int(n.bit_length() * 0.30102999566398120))  # log10(2): within one of the answer
    while 10 ** digits <= n:
        digits += 1
    while digits > 1 and 10 ** (digits - 1) > n:
        digits -= 1
    return digits


class SpecError(ValueError):
    """A bad spec, shape or file: the message names the file (where one is involved), the field, the bad
    value and what is allowed, e.g. ``trace.csv:12: prompt_tokens: must be >= 1, got 'inf'``."""

    def __init__(self, field: str, problem: str, got: object = None, file: str | None = None):
        super().__init__(field, problem, got, file)  # the arguments, so that copies (SimPy re-raises one) rebuild it
        self.field, self.problem, self.got, self.file = field, problem, got, file
        where = ": ".join(part for part in (file, field) if part)
        text = f"{where}: {problem}" if where else problem
        if got is not None:
            text += ", got " + excerpt(got)
        self.text = text.replace("\r", "\\r").replace("\n", "\\n")

    def __str__(self) -> str:
        return self.text

    def in_file(self, file: str) -> SpecError:
        """The same error as found in `file`, unless it already names a file of its own (a trace's line)."""
        return self if self.file else type(self)(self.field, self.problem, self.got, file)


class HardwareLimit(SpecError):
    """A configuration valid in itself that a GPU cannot hold or run: the model does not fit its memory, it
    has no tensor-core peak in the scheme's dtype, tensor parallelism spans more GPUs than its fabric joins.
    A capacity plan records such a candidate infeasible; any other SpecError is a mistake in the file."""


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


def closest_name(name: str, names, cutoff: float = 0.8) -> str | None:
    """The one of `names` that `name` most likely misspells (difflib's ratio at least `cutoff`), or None. Names
    that differ only in their numbers (p90_ttft_ms, p99_ttft_ms) are different figures, not slips."""
    def digitless(text: str) -> str:
        return re.sub(r"\d+", "#", text)
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=cutoff)
    return next((c for c in close if digitless(c) != digitless(name)), None)


def require_choice(field: str, value: object, allowed) -> None:
    if value not in allowed:
        raise SpecError(field, f"must be one of {', '.join(map(str, allowed))}", value)


def require_count(field: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SpecError(field, "must be a whole number >= 1", value)
