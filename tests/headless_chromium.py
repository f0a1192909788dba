"""A real headless Chromium on a local page: its DOM once its scripts ran, and a screenshot.

The report's tests open its page this way, as a person's browser would. The browser is the
system's (Debian's ``chromium`` package, which ``.ci/run`` installs), found on ``PATH``.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

CHROMIUM_NAMES: Final = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Executable names of Chromium, tried in order on ``PATH``."""

_FLAGS: Final = (
    "--headless",
    "--disable-gpu",
    # The page is the test's own file, read offline: the sandbox only gets in the way where it
    # cannot start (as root, in a container).
    "--no-sandbox",
    # No connection attempt of the browser's own (updates, sync, field trials): the page needs
    # the network for nothing, and a closed network would only slow the start down.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--hide-scrollbars",
    # Let the page's scripts run (plotly draws on load) before the DOM or the picture is taken.
    "--virtual-time-budget=10000",
)
_TIMEOUT_S: Final = 60


class BrowserError(Exception):
    """Chromium is not installed, or it failed on the page."""


def find_chromium() -> str | None:
    """Return the path of Chromium on ``PATH``, or ``None``."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    executable = find_chromium()
    if executable is None:
        raise BrowserError(
            f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)}): install Debian's "
            "chromium package"
        )
    # A fresh profile each run: nothing of another run, or of a person's browser, leaks in.
    with tempfile.TemporaryDirectory(prefix="recorder-chromium-") as profile:
        try:
            result = subprocess.run(
                [executable, *_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
                capture_output=True,
                text=True,
                timeout=_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrowserError(f"{executable} failed on {page}: {exc}") from exc
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-5:])
        raise BrowserError(f"{executable} exited {result.returncode} on {page}: {tail}")
    return result


def render(page: Path, png: Path | None = None, size: tuple[int, int] = (1280, 1024)) -> str:
    """Return the DOM of ``page`` after its scripts ran, serialised as HTML.

    Args:
        page: the local HTML file.
        png: where to write a screenshot of the same rendering too, if anywhere.
        size: the window's width and height in pixels (the screenshot's size).

    Raises:
        BrowserError: Chromium is missing, failed, or wrote no picture.
    """
    args = [f"--window-size={size[0]},{size[1]}", "--dump-dom"]
    if png is not None:
        try:
            png.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BrowserError(f"cannot make the directory of {png}: {exc}") from exc
        args.append(f"--screenshot={png.resolve()}")
    dom = _run(page, *args).stdout
    if png is not None and (not png.is_file() or png.stat().st_size == 0):
        raise BrowserError(f"Chromium wrote no screenshot of {page} to {png}")
    return dom
