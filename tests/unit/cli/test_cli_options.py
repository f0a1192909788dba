"""Option values the commands refuse say what was expected; the values they take parse."""

import datetime as dt

import click
import pytest
from click.testing import CliRunner

from recorder.cli.main import main
from recorder.cli.options import (
    port_value,
    positive_number_value,
    utc_day_value,
    whole_number_value,
)


@click.command()
@click.option("--port", callback=port_value)
@click.option("--speed", callback=positive_number_value)
@click.option("--seed", callback=whole_number_value)
@click.option("--day", callback=utc_day_value)
def echo(port: int | None, speed: float | None, seed: int | None, day: dt.date | None) -> None:
    click.echo(repr((port, speed, seed, day)))


@pytest.mark.parametrize(
    ("args", "parsed"),
    [
        (["--port", "0"], (0, None, None, None)),
        (["--port", "65535", "--speed", "0.5"], (65535, 0.5, None, None)),
        (["--seed", "-3", "--day", "2024-02-29"], (None, None, -3, dt.date(2024, 2, 29))),
        ([], (None, None, None, None)),
    ],
)
def test_the_values_the_options_take(args: list[str], parsed: tuple[object, ...]) -> None:
    result = CliRunner().invoke(echo, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(parsed)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["simulate", "--port", "abc"],
            "expected a whole number from 0 (pick a free one) to 65535",
        ),
        (["simulate", "--port", "65536"], "expected a whole number from 0 (pick a free one)"),
        (["simulate", "--speed", "0"], "expected a number above 0"),
        (["simulate", "--speed", "nan"], "expected a number above 0"),
        (["simulate", "--speed", "fast"], "expected a number above 0"),
        (["simulate", "--seed", "x"], "is not a whole number: expected digits"),
        (["simulate", "--start-ms", "1.5"], "is not a whole number: expected digits"),
        (["compact", "--date", "2024-13-01"], "expected a UTC day written YYYY-MM-DD"),
        (["compact", "--date", "yesterday"], "expected a UTC day written YYYY-MM-DD"),
    ],
)
def test_a_refused_value_says_what_was_expected(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert f"Invalid value for '{args[1]}'" in result.output
    assert expected in result.output
