from pathlib import Path

from click.testing import CliRunner, Result
from recorded_dataset import coverage_root

from recorder.cli.main import main
from recorder.reports.read import ExitCode

WINDOW = ("--since", "2024-05-01T10:00", "--until", "2024-05-01T13:00")


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    # A stray RECORDER_ setting of the machine running the tests must not leak in.
    return CliRunner().invoke(main, ["report", *args], env={"RECORDER_CONFIG": None} | (env or {}))


def test_writes_the_page_and_says_what_it_holds(tmp_path: Path) -> None:
    root = coverage_root(tmp_path / "data")
    out = tmp_path / "pages" / "report.html"
    result = run("--root", str(root), *WINDOW, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {out}: 3 symbols, 3 hours, coverage 92.9%, 1 open gap\n"
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_a_missing_root_cannot_be_reported(tmp_path: Path) -> None:
    result = run("--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.html"))
    assert result.exit_code == ExitCode.CANNOT_CHECK
    assert "does not exist" in result.output
    assert not (tmp_path / "r.html").exists()


def test_a_window_that_ends_before_it_starts_is_refused(tmp_path: Path) -> None:
    result = run("--root", str(tmp_path), "--since", "1h", "--until", "2h")
    assert result.exit_code == 2
    assert "is not after --since '1h'" in result.output


def test_no_chromium_for_the_png_leaves_the_page_and_exits_2(tmp_path: Path) -> None:
    root = coverage_root(tmp_path / "data")
    out, png = tmp_path / "r.html", tmp_path / "r.png"
    # kaleido takes the browser BROWSER_PATH names before looking anywhere (it never downloads).
    no_browser: dict[str, str | None] = {"BROWSER_PATH": str(tmp_path / "no-chromium")}
    result = run("--root", str(root), *WINDOW, "--out", str(out), "--png", str(png), env=no_browser)
    assert result.exit_code == ExitCode.CANNOT_CHECK
    assert f"wrote {out} but no PNG: cannot write {png}: No browser found at" in result.output
    assert "install Debian's chromium package" in result.output
    assert out.is_file()
    assert not png.exists()
