"""A progress bar for long maintenance work (``compact``, ``backfill``), on a terminal only.

Off a terminal (cron, a pipe, a log) nothing is drawn: those commands print one summary line
there instead. The bar is tqdm's, on standard error, so that standard output stays the report.
"""

import sys
from typing import Any


class ProgressBar:
    """A tqdm bar when standard error is a terminal and the output is text; else nothing.

    Args:
        unit: what is counted (``"gap"``, ``"partition"``).
        desc: the bar's label.
        enabled: draw it; ``None`` decides by whether standard error is a terminal.
    """

    def __init__(self, unit: str, desc: str, *, enabled: bool | None = None) -> None:
        self._unit = unit
        self._desc = desc
        self._enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None

    @property
    def enabled(self) -> bool:
        """Whether a bar is drawn (standard error is a terminal)."""
        return self._enabled

    def start(self, total: int) -> None:
        """Begin a bar of ``total`` steps."""
        if self._enabled and self._bar is None:
            from tqdm import tqdm  # noqa: PLC0415 - only a terminal needs it

            self._bar = tqdm(total=total, unit=self._unit, desc=self._desc, file=sys.stderr)

    def advance(self, count: int = 1, label: str | None = None) -> None:
        """Move ``count`` steps on, showing ``label`` (what was just done) beside the bar."""
        if self._bar is not None:
            if label is not None:
                self._bar.set_postfix_str(label, refresh=False)
            self._bar.update(count)

    def close(self) -> None:
        """Take the bar down (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
