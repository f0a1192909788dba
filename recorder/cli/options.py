"""Click callbacks for the commands' options, each parsing one kind of value.

A refusal says what was expected: click's own messages name a Python type, not a form a user
can type.
"""

import contextlib
import datetime as dt
import math
import re
from typing import Final

import click

_MAX_PORT: Final = 65535


def count_value(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Parse a count option (a click callback): a whole number, 0 or more; a refusal says so."""
    if value is None:
        return None
    if re.fullmatch(r"[0-9]+", value.strip()):
        return int(value)
    raise click.BadParameter(
        f"{value!r} is not a count: expected a whole number, 0 or more, such as 0 or 25",
        ctx=ctx,
        param=param,
    )


def whole_number_value(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Parse a whole-number option (a click callback), negative allowed; a refusal says so."""
    if value is None:
        return None
    if re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    raise click.BadParameter(
        f"{value!r} is not a whole number: expected digits, such as 0 or 1714607542113",
        ctx=ctx,
        param=param,
    )


def port_value(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Parse a TCP port option (a click callback): 0 to 65535; a refusal says so."""
    if value is None:
        return None
    if re.fullmatch(r"[0-9]{1,5}", value.strip()) and int(value) <= _MAX_PORT:
        return int(value)
    raise click.BadParameter(
        f"{value!r} is not a port: expected a whole number from 0 (pick a free one) to 65535",
        ctx=ctx,
        param=param,
    )


def positive_number_value(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> float | None:
    """Parse a positive number option (a click callback), such as a speed; a refusal says so."""
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        number = float(value)
        if math.isfinite(number) and number > 0:
            return number
    raise click.BadParameter(
        f"{value!r} is not a positive number: expected a number above 0, such as 1, 10 or 0.5",
        ctx=ctx,
        param=param,
    )


def utc_day_value(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    """Parse a day option (a click callback): ``YYYY-MM-DD``; a refusal says so."""
    if value is None:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise click.BadParameter(
        f"{value!r} is not a day: expected a UTC day written YYYY-MM-DD, such as 2024-05-01",
        ctx=ctx,
        param=param,
    )
