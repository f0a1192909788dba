import csv
import io
import json
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from recorded_dataset import BTC, ETH, MINUTE_MS, T0, log_gaps, write_data_file

from recorder.cli.reports import REPORT_COMMANDS, check_command, gaps_command, verify_command
from recorder.gaps.detector import Gap, GapCause
from recorder.gaps.resolutions import Resolution, append_resolutions
from recorder.gaps.state import write_state
from recorder.reports.read import ExitCode


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def run(command: click.Command, *args: str) -> Result:
    # A stray RECORDER_ setting of the machine running the tests must not leak in.
    return CliRunner().invoke(command, list(args), env={"RECORDER_CONFIG": None})


def gap(symbol: str, from_ms: int, to_ms: int, cause: GapCause, instance: str = "host-a") -> Gap:
    missed = round((to_ms - from_ms) / 2000) - 1
    return Gap(symbol, from_ms, to_ms, missed, cause, to_ms * 1000, "0.1", instance)


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """A root as a healthy recorder leaves it: recent state, one quiet gap an hour ago."""
    now = now_ms()
    write_state(tmp_path, "host-a", {BTC: now - 2000, ETH: now - 40_000}, [BTC, ETH])
    log_gaps(tmp_path, gap(ETH, now - 70 * MINUTE_MS, now - 60 * MINUTE_MS, GapCause.QUIET))
    return tmp_path


def test_the_commands_are_named_for_the_group() -> None:
    assert [command.name for command in REPORT_COMMANDS] == ["gaps", "check", "verify"]


# -- gaps ------------------------------------------------------------------------------------


def test_gaps_table(recording: Path) -> None:
    log_gaps(recording, gap(BTC, T0, T0 + 10_000, GapCause.DISCONNECT))
    result = run(gaps_command, "--root", str(recording))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["SYMBOL", "FROM", "TO"]
    assert [line.split()[0] for line in lines[1:-1]] == [BTC, ETH]
    assert lines[-1] == (
        "Total: 2 gaps, 303 missed updates: disconnect 1 gap/4 missed, quiet 1 gap/299 missed"
    )


def test_gaps_filters(recording: Path) -> None:
    log_gaps(recording, gap(BTC, T0, T0 + 10_000, GapCause.DISCONNECT))
    result = run(gaps_command, "--root", str(recording), "--since", "2h", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [record["symbol"] for record in json.loads(result.output)] == [ETH]
    result = run(
        gaps_command, "--root", str(recording), "--until", "2024-05-02", "--format", "json"
    )
    assert [record["symbol"] for record in json.loads(result.output)] == [BTC]
    result = run(gaps_command, "--root", str(recording), "--symbol", "btcusdt", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(row["symbol"], row["from_ms"], row["cause"]) for row in rows] == [
        (BTC, str(T0), "disconnect")
    ]


def test_gaps_root_from_the_environment(recording: Path) -> None:
    result = CliRunner().invoke(
        gaps_command,
        ["--format", "json"],
        env={"RECORDER_STORAGE__ROOT": str(recording), "RECORDER_CONFIG": None},
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 1


def test_gaps_root_from_a_config_file(
    recording: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = tmp_path_factory.mktemp("config") / "recorder.toml"
    config.write_text(f'[storage]\nroot = "{recording}"\n')
    result = run(gaps_command, "-c", str(config), "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 1


def test_gaps_refuses_bad_options(recording: Path) -> None:
    result = run(gaps_command, "--root", str(recording), "--since", "yesterday")
    assert result.exit_code == 2
    assert "'yesterday' is not a time" in result.output
    result = run(gaps_command, "--root", str(recording), "--symbol", "../etc")
    assert result.exit_code == 2
    assert "is not a symbol" in result.output


@pytest.mark.parametrize("since", ["1000d", "3650d", "90m", "2024-05-01", "2024-05-01T10:00"])
def test_gaps_and_check_take_any_past_duration_or_date(recording: Path, since: str) -> None:
    result = run(gaps_command, "--root", str(recording), "--since", since, "--format", "json")
    assert result.exit_code == 0, result.output
    assert [record["symbol"] for record in json.loads(result.output)] == [ETH]
    result = run(check_command, "--root", str(recording), "--since", since, "--causes", "stall")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("command", "option", "value", "expected"),
    [
        (gaps_command, "--since", "5", "expected 'now', a duration before now with a unit"),
        (gaps_command, "--until", "2w", "expected 'now', a duration before now with a unit"),
        (gaps_command, "--symbol", "a/b", "expected letters and digits of any script"),
        (gaps_command, "--format", "xml", "'table', 'json', 'csv'"),
        (check_command, "--since", "later", "expected 'now'"),
        (check_command, "--max-missed", "x", "expected a whole number, 0 or more"),
        (check_command, "--max-missed", "-1", "expected a whole number, 0 or more"),
        (check_command, "--max-missed-total", "1.5", "expected a whole number, 0 or more"),
        (check_command, "--max-age", "2y", "expected a duration written like"),
        (check_command, "--symbols", ",", "expected symbols such as BTCUSDT,ETHUSDT"),
        (check_command, "--causes", "gremlins", "expected some of disconnect"),
        (check_command, "--format", "xml", "'text', 'json'"),
        (verify_command, "--date", "2024-13-01", "expected a UTC day written YYYY-MM-DD"),
        (verify_command, "--date", "yesterday", "expected a UTC day written YYYY-MM-DD"),
    ],
)
def test_every_refused_option_says_what_was_expected(
    recording: Path, command: click.Command, option: str, value: str, expected: str
) -> None:
    result = run(command, "--root", str(recording), option, value)
    assert result.exit_code == 2
    assert (
        f"Invalid value for {option}" in result.output.replace("'", "") or option in result.output
    )
    assert expected in result.output


def test_gaps_on_a_missing_root(tmp_path: Path) -> None:
    result = run(gaps_command, "--root", str(tmp_path / "nope"))
    assert result.exit_code == ExitCode.CANNOT_CHECK
    assert "does not exist" in result.stderr


def test_gaps_warns_of_a_torn_line(recording: Path) -> None:
    [path] = (recording / "_gaps").rglob("*.jsonl")
    with path.open("a") as stream:
        stream.write('{"symbol": "BT')
    result = run(gaps_command, "--root", str(recording), "--format", "json")
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == 1
    assert "incomplete last line 2" in result.stderr


# -- check -----------------------------------------------------------------------------------


def test_check_healthy(recording: Path) -> None:
    result = run(check_command, "--root", str(recording))
    assert result.exit_code == ExitCode.OK, result.output
    assert result.output.startswith("OK: 2 symbols, 0 missed updates")
    quiet = run(check_command, "--root", str(recording), "--quiet")
    assert (quiet.exit_code, quiet.output) == (0, "")


def test_check_gaps_over_the_threshold(recording: Path) -> None:
    now = now_ms()
    log_gaps(recording, gap(BTC, now - 10 * MINUTE_MS, now - 9 * MINUTE_MS, GapCause.DISCONNECT))
    result = run(check_command, "--root", str(recording), "--quiet")
    assert result.exit_code == ExitCode.PROBLEMS
    [line] = result.output.splitlines()
    assert line.startswith("BTCUSDT: 29 missed updates since ")
    assert line.endswith("(disconnect 29), over the limit of 0 per symbol")
    assert run(check_command, "--root", str(recording), "--max-missed", "29").exit_code == 0
    assert run(check_command, "--root", str(recording), "--since", "5m").exit_code == 0
    total = run(
        check_command, "--root", str(recording), "--max-missed", "100", "--max-missed-total", "10"
    )
    assert total.exit_code == ExitCode.PROBLEMS
    assert total.output.startswith("all symbols: 29 missed updates")
    quiet_counted = run(
        check_command, "--root", str(recording), "--causes", "quiet", "--since", "2h"
    )
    assert quiet_counted.exit_code == ExitCode.PROBLEMS
    assert quiet_counted.output.startswith("ETHUSDT: ")


def test_check_stale(recording: Path) -> None:
    result = run(check_command, "--root", str(recording), "--max-age", "30s")
    assert result.exit_code == ExitCode.PROBLEMS
    [line] = result.output.splitlines()
    assert line.startswith("ETHUSDT: newest event ")
    assert line.endswith("older than the limit of 30s")
    never = run(check_command, "--root", str(recording), "--symbols", "BTCUSDT,XRPUSDT")
    assert never.exit_code == ExitCode.PROBLEMS
    assert never.output == "XRPUSDT: no event recorded (in no state file and no sealed data file)\n"


def test_check_unreadable(recording: Path) -> None:
    path = write_data_file(recording, BTC, [now_ms() - 4000, now_ms() - 2000])
    path.write_bytes(path.read_bytes()[:64])
    result = run(check_command, "--root", str(recording))
    assert result.exit_code == ExitCode.CANNOT_CHECK
    assert result.stdout == ""
    assert "recorder check: cannot check: cannot read sealed file" in result.stderr


def test_check_bad_gap_log_as_json(recording: Path) -> None:
    [path] = (recording / "_gaps").rglob("*.jsonl")
    with path.open("a") as stream:
        stream.write("garbage\n")
    result = run(check_command, "--root", str(recording), "--format", "json")
    assert result.exit_code == ExitCode.CANNOT_CHECK
    document = json.loads(result.stdout)
    assert document["status"] == "error"
    assert document["exit_code"] == 2
    assert f"{path}:2" in document["error"]


def test_check_cannot_check_an_empty_or_missing_root(tmp_path: Path) -> None:
    empty = run(check_command, "--root", str(tmp_path))
    assert empty.exit_code == ExitCode.CANNOT_CHECK
    assert "no symbols to check" in empty.stderr
    missing = run(check_command, "--root", str(tmp_path / "nope"))
    assert missing.exit_code == ExitCode.CANNOT_CHECK
    assert "does not exist" in missing.stderr


def test_check_json(recording: Path) -> None:
    result = run(check_command, "--root", str(recording), "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert (document["status"], document["exit_code"], document["problems"]) == ("ok", 0, [])
    assert [entry["symbol"] for entry in document["symbols"]] == [BTC, ETH]
    assert document["limits"]["causes"] == ["disconnect", "restart", "stall", "storage"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--since", "later", "'later' is not a time"),
        ("--max-age", "soon", "'soon' is not valid"),
        ("--causes", "quiet,gremlins", "expected some of disconnect, stall, restart, quiet"),
        ("--symbols", "BTCUSDT,../x", "is not a comma-separated list of symbols"),
        ("--max-missed", "-1", "-1"),
    ],
)
def test_check_refuses_bad_options(recording: Path, option: str, value: str, message: str) -> None:
    result = run(check_command, "--root", str(recording), option, value)
    assert result.exit_code == 2
    assert message in result.output


def test_check_configuration_error(recording: Path) -> None:
    result = CliRunner().invoke(
        check_command,
        ["--root", str(recording)],
        env={"RECORDER_CONFIG": None, "RECORDER_GAPS__INTERVAL": "fast"},
    )
    assert result.exit_code == ExitCode.CANNOT_CHECK
    assert "configuration error" in result.stderr
    assert "RECORDER_GAPS__INTERVAL" in result.stderr


# -- verify ----------------------------------------------------------------------------------


def test_verify_clean(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, list(range(T0, T0 + 20_000, 2000)))
    result = run(verify_command, "--root", str(tmp_path))
    assert result.exit_code == ExitCode.OK, result.output
    assert result.output.startswith("OK: verified 1 file in 1 partition (10 rows)")


def test_verify_catches_a_planted_duplicate(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, list(range(T0, T0 + 20_000, 2000)), name="a.parquet")
    write_data_file(tmp_path, BTC, [T0 + 8000], name="planted.parquet")
    result = run(verify_command, "--root", str(tmp_path))
    assert result.exit_code == ExitCode.PROBLEMS
    assert result.output.splitlines()[0] == (
        "problem: duplicate: BTCUSDT on 2024-05-01: 1 duplicate event "
        "(first at 2024-05-01T10:00:08.000Z) in a.parquet, planted.parquet"
    )
    assert result.output.splitlines()[-1].startswith("FAILED: verified 2 files")


def test_verify_catches_an_unsorted_file(tmp_path: Path) -> None:
    path = write_data_file(tmp_path, BTC, [T0, T0 + 4000, T0 + 2000])
    result = run(verify_command, "--root", str(tmp_path), "--format", "json")
    assert result.exit_code == ExitCode.PROBLEMS
    document = json.loads(result.output)
    assert [(f["kind"], f["path"]) for f in document["findings"]] == [("unsorted", str(path))]


def test_verify_catches_a_truncated_file(tmp_path: Path) -> None:
    path = write_data_file(tmp_path, BTC, list(range(T0, T0 + 20_000, 2000)))
    path.write_bytes(path.read_bytes()[:-10])
    result = run(verify_command, "--root", str(tmp_path))
    assert result.exit_code == ExitCode.PROBLEMS
    assert result.output.startswith(f"problem: unreadable: {path} cannot be read")


def test_verify_one_date(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, [T0, T0 + 4000, T0 + 2000])
    next_day = T0 + 86_400_000
    write_data_file(tmp_path, BTC, list(range(next_day, next_day + 10_000, 2000)))
    assert run(verify_command, "--root", str(tmp_path), "--date", "2024-05-02").exit_code == 0
    assert run(verify_command, "--root", str(tmp_path), "--date", "2024-05-01").exit_code == 1
    bad = run(verify_command, "--root", str(tmp_path), "--date", "May 1st")
    assert bad.exit_code == 2


def test_verify_uses_the_configured_interval(tmp_path: Path) -> None:
    write_data_file(tmp_path, BTC, list(range(T0, T0 + 20_000, 2000)))
    result = CliRunner().invoke(
        verify_command,
        ["--root", str(tmp_path)],
        env={"RECORDER_CONFIG": None, "RECORDER_GAPS__INTERVAL": "1s"},
    )
    # Under a 1 s interval every 2 s step misses one update, and none is logged.
    assert result.exit_code == ExitCode.PROBLEMS
    assert result.output.count("unlogged_gap") == 9


def test_verify_missing_root(tmp_path: Path) -> None:
    result = run(verify_command, "--root", str(tmp_path / "nope"), "--format", "json")
    assert result.exit_code == ExitCode.CANNOT_CHECK
    assert json.loads(result.stdout)["status"] == "error"


def test_the_commands_mount_on_a_group(recording: Path) -> None:
    group = click.Group("recorder", commands=list(REPORT_COMMANDS))
    result = CliRunner().invoke(group, ["check", "--root", str(recording)])
    assert result.exit_code == 0, result.output
    assert "--max-missed" in CliRunner().invoke(group, ["check", "--help"]).output


def test_check_quiet_ignores_a_torn_line_when_healthy(recording: Path) -> None:
    [path] = (recording / "_gaps").rglob("*.jsonl")
    with path.open("a") as stream:
        stream.write('{"symbol": "BT')
    quiet = run(check_command, "--root", str(recording), "--quiet")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    loud = run(check_command, "--root", str(recording))
    assert "incomplete last line 2" in loud.stderr


def test_gaps_state_and_check_count_open_gaps_unless_told(recording: Path) -> None:
    now = now_ms()
    stall = gap(BTC, now - 30 * MINUTE_MS, now - 20 * MINUTE_MS, GapCause.STALL)
    log_gaps(recording, stall)
    assert run(check_command, "--root", str(recording)).exit_code == ExitCode.PROBLEMS
    append_resolutions(
        recording, "backfill", [Resolution(stall.key, 9, "backfill", now * 1000, "backfill")]
    )
    assert run(check_command, "--root", str(recording)).exit_code == ExitCode.OK
    counted = run(check_command, "--root", str(recording), "--include-resolved")
    assert counted.exit_code == ExitCode.PROBLEMS

    listed = json.loads(run(gaps_command, "--root", str(recording), "--format", "json").output)
    assert [(g["symbol"], g["state"]) for g in listed] == [(ETH, "open"), (BTC, "resolved")]
    assert listed[1]["resolution"]["rows"] == 9
    only_open = run(gaps_command, "--root", str(recording), "--state", "open", "--format", "csv")
    assert [row["symbol"] for row in csv.DictReader(io.StringIO(only_open.output))] == [ETH]
    table = run(gaps_command, "--root", str(recording), "--state", "resolved").output
    assert table.splitlines()[1].split()[0] == BTC
    assert "resolved" in table.splitlines()[1].split()
