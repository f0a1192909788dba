"""What ``recorder verify`` reports: the kinds of finding, and its outcome as text and JSON."""

import datetime as dt
import enum
from dataclasses import dataclass
from pathlib import Path

from recorder.gaps.scan import TornLine
from recorder.reports.read import ExitCode, plural, torn_line_warning


class FindingKind(enum.StrEnum):
    """What ``verify`` can find."""

    STRAY_PARQUET = "stray_parquet"
    """A ``.parquet`` file outside ``date=*/symbol=*/``: DuckDB's ``**`` glob would read it."""
    BAD_PARTITION = "bad_partition"
    """A data file in a directory whose name is not a valid ``date=``/``symbol=`` value."""
    UNREADABLE = "unreadable"
    """The footer or the data of a file cannot be read (truncated, corrupt)."""
    SCHEMA_MISMATCH = "schema_mismatch"
    """The columns are not the recorder's schema."""
    MIXED_SCHEMA = "mixed_schema"
    """Files of two schema versions in one root: DuckDB's and polars' glob calls refuse it."""
    METADATA_MISMATCH = "metadata_mismatch"
    """The file's key-value metadata does not name its partition."""
    UNSORTED = "unsorted"
    """Rows are not sorted by ``event_time``."""
    DUPLICATE = "duplicate"
    """An event (symbol, ``event_time``) appears more than once."""
    WRONG_DATE = "wrong_date"
    """Rows whose ``event_time`` is not on the partition's UTC date."""
    UNLOGGED_GAP = "unlogged_gap"
    """A gap in the data that no gap log record covers."""
    GAP_FILLED = "gap_filled"
    """A logged gap now has data inside it (backfill, another instance): a notice only."""


NOTICE_KINDS: frozenset[FindingKind] = frozenset({FindingKind.GAP_FILLED})
"""Findings that are reported but do not fail ``verify``."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing ``verify`` found.

    Attributes:
        kind: what it is.
        message: one line for a human.
        path: the file or directory concerned, when there is one.
        symbol: the symbol concerned, when there is one.
    """

    kind: FindingKind
    message: str
    path: Path | None = None
    symbol: str | None = None

    @property
    def is_problem(self) -> bool:
        """Whether it fails ``verify`` (everything but notices)."""
        return self.kind not in NOTICE_KINDS


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of ``verify``.

    Attributes:
        date: the day verified; ``None``: every day.
        files: data files read.
        rows: rows read.
        partitions: symbol-day partitions read.
        data_gaps: gaps recomputed from the data.
        logged_gaps: distinct gaps in the gap log within the scope.
        findings: problems and notices, in discovery order.
        torn_lines: incomplete last lines of the gap log.
    """

    date: dt.date | None
    files: int
    rows: int
    partitions: int
    data_gaps: int
    logged_gaps: int
    findings: tuple[Finding, ...]
    torn_lines: tuple[TornLine, ...] = ()

    @property
    def problems(self) -> int:
        """Findings that fail ``verify``."""
        return sum(finding.is_problem for finding in self.findings)

    @property
    def exit_code(self) -> ExitCode:
        """``OK`` without problems (notices allowed), ``PROBLEMS`` otherwise."""
        return ExitCode.PROBLEMS if self.problems else ExitCode.OK

    def render_text(self) -> list[str]:
        """One line per finding, then a summary line."""
        lines = [
            f"{'problem' if finding.is_problem else 'notice'}: {finding.kind.value}: "
            f"{finding.message}"
            for finding in self.findings
        ]
        notices = len(self.findings) - self.problems
        scope = f" of {self.date.isoformat()}" if self.date is not None else ""
        verdict = "OK" if not self.problems else "FAILED"
        lines.append(
            f"{verdict}: verified {plural(self.files, 'file')}{scope} in "
            f"{plural(self.partitions, 'partition')} ({plural(self.rows, 'row')}), "
            f"{plural(self.data_gaps, 'gap')} in the data, "
            f"{plural(self.logged_gaps, 'logged gap')}: "
            f"{plural(self.problems, 'problem')}, {plural(notices, 'notice')}"
        )
        return lines

    def to_document(self) -> dict[str, object]:
        """The machine-readable report (``--format json``)."""
        return {
            "status": "ok" if not self.problems else "problems",
            "exit_code": int(self.exit_code),
            "date": None if self.date is None else self.date.isoformat(),
            "files": self.files,
            "rows": self.rows,
            "partitions": self.partitions,
            "data_gaps": self.data_gaps,
            "logged_gaps": self.logged_gaps,
            "problems": self.problems,
            "findings": [
                {
                    "kind": finding.kind.value,
                    "severity": "problem" if finding.is_problem else "notice",
                    "symbol": finding.symbol,
                    "path": None if finding.path is None else str(finding.path),
                    "message": finding.message,
                }
                for finding in self.findings
            ],
            "warnings": [torn_line_warning(line) for line in self.torn_lines],
        }
