"""The one error type the front door turns into a one-line message (no traceback)."""


class SpecError(ValueError):
    """A bad spec, shape or file: the message names the field, the bad value and what is allowed."""

    def __init__(self, field: str, problem: str, got: object = None):
        super().__init__(field, problem, got)  # the arguments, so that copies (SimPy re-raises one) rebuild it
        self.field = field
        self.text = f"{field}: {problem}" + (f", got {got!r}" if got is not None else "")

    def __str__(self) -> str:
        return self.text


def require_positive(field: str, value: float) -> None:
    if not value > 0:
        raise SpecError(field, "must be > 0", value)


def require_choice(field: str, value: object, allowed) -> None:
    if value not in allowed:
        raise SpecError(field, f"must be one of {', '.join(map(str, allowed))}", value)
