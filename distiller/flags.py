"""Values written on the command line, read the same way by every command (the library takes lists
and numbers; its errors speak of values, these of the flag that was given)."""

from __future__ import annotations

from mlffd.errors import MLFFDError


def comma_separated(text: str, flag: str, kind=float, unit: str = "") -> list:
    """A flag's comma-separated numbers ("300,900" -> [300.0, 900.0]); the library takes lists, the
    command line writes them this way."""
    try:
        values = [kind(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        values = None
    if not values:
        what = {float: "numbers", int: "integers"}[kind]
        raise MLFFDError(f"{flag} must be comma-separated {what}{' in ' + unit if unit else ''}, got {text!r}")
    return values
