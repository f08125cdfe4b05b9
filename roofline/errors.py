"""The one error type the front door turns into a one-line message (no traceback)."""


class SpecError(ValueError):
    """A bad spec, shape or file: the message names the field, the bad value and what is allowed."""

    def __init__(self, field: str, problem: str, got: object = None):
        self.field = field
        text = f"{field}: {problem}"
        if got is not None:
            text += f", got {got!r}"
        super().__init__(text)


def require_positive(field: str, value: float) -> None:
    if not value > 0:
        raise SpecError(field, "must be > 0", value)


def require_choice(field: str, value: object, allowed) -> None:
    if value not in allowed:
        raise SpecError(field, f"must be one of {', '.join(map(str, allowed))}", value)
