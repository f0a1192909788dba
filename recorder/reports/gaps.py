"""What ``recorder gaps`` computes: logged gaps counted and rendered as a table, JSON or CSV.

The gaps themselves come from :func:`recorder.gaps.scan.scan_gap_log`; every record is rendered
as logged, one per instance that logged it, while the totals count each distinct gap (symbol,
``from_ms``, ``to_ms``) once. Each gap's state is ``open``, or ``resolved`` once
``recorder backfill`` filled it (:mod:`recorder.gaps.resolutions`).
"""

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from recorder.clock import format_utc_ms
from recorder.gaps.detector import Gap, GapCause
from recorder.gaps.records import RecordKey, gap_to_record
from recorder.gaps.resolutions import Resolution
from recorder.gaps.scan import distinct_gaps
from recorder.reports.read import MS_PER_SECOND, plural
from recorder.settings.units import format_duration

_TABLE_HEADER = (
    "SYMBOL",
    "FROM",
    "TO",
    "DURATION",
    "MISSED",
    "CAUSE",
    "STATE",
    "INSTANCE",
    "CONNECTION",
)
_CSV_COLUMNS = (
    "symbol",
    "from",
    "to",
    "from_ms",
    "to_ms",
    "missed",
    "cause",
    "detected_at",
    "connection_id",
    "instance_id",
    "state",
    "resolved_rows",
    "resolved_at",
)

Resolutions = Mapping[RecordKey, Resolution]
"""The resolved gaps by key, as :func:`~recorder.gaps.resolutions.read_resolutions` reads them."""


def gap_state(gap: Gap, resolutions: Resolutions) -> str:
    """``resolved`` when a resolution names ``gap``, else ``open``."""
    return "resolved" if gap.key in resolutions else "open"


def gap_document(gap: Gap, resolutions: Resolutions) -> dict[str, object]:
    """The gap's record with its ``state`` and ``resolution`` (``None`` while open)."""
    resolution = resolutions.get(gap.key)
    return {
        **gap_to_record(gap),
        "state": gap_state(gap, resolutions),
        "resolution": None if resolution is None else resolution.to_record(),
    }


@dataclass(frozen=True, slots=True)
class CauseTotals:
    """Gaps and missed updates of one cause.

    Attributes:
        gaps: distinct gaps.
        missed: missed updates.
    """

    gaps: int = 0
    missed: int = 0


@dataclass(frozen=True, slots=True)
class GapTotals:
    """The totals line of ``recorder gaps``.

    Attributes:
        gaps: distinct gaps (one per symbol, ``from_ms``, ``to_ms``).
        records: log records; more than ``gaps`` when several instances logged the same gap.
        missed: missed updates of the distinct gaps.
        by_cause: the same per cause, every cause present.
    """

    gaps: int
    records: int
    missed: int
    by_cause: Mapping[GapCause, CauseTotals]


def gap_totals(gaps: Sequence[Gap]) -> GapTotals:
    """Count ``gaps``: each distinct gap once, however many instances logged it."""
    distinct = distinct_gaps(gaps)
    by_cause = {cause: CauseTotals() for cause in GapCause}
    for gap in distinct:
        known = by_cause[gap.cause]
        by_cause[gap.cause] = CauseTotals(known.gaps + 1, known.missed + gap.missed)
    return GapTotals(
        gaps=len(distinct),
        records=len(gaps),
        missed=sum(gap.missed for gap in distinct),
        by_cause=by_cause,
    )


def render_totals(totals: GapTotals) -> str:
    """Render the totals line of the table format.

    >>> render_totals(gap_totals([]))
    'Total: 0 gaps, 0 missed updates'
    """
    records = f" ({plural(totals.records, 'record')})" if totals.records != totals.gaps else ""
    line = f"Total: {plural(totals.gaps, 'gap')}{records}, {plural(totals.missed, 'missed update')}"
    parts = [
        f"{cause.value} {plural(counts.gaps, 'gap')}/{counts.missed} missed"
        for cause, counts in totals.by_cause.items()
        if counts.gaps
    ]
    return f"{line}: {', '.join(parts)}" if parts else line


def render_gaps_table(gaps: Sequence[Gap], resolutions: Resolutions | None = None) -> str:
    """Render ``gaps`` as an aligned text table followed by the totals line."""
    resolved = resolutions or {}
    rows = [
        (
            gap.symbol,
            format_utc_ms(gap.from_ms),
            format_utc_ms(gap.to_ms),
            format_duration((gap.to_ms - gap.from_ms) / MS_PER_SECOND),
            str(gap.missed),
            gap.cause.value,
            gap_state(gap, resolved),
            gap.instance_id or "-",
            gap.connection_id or "-",
        )
        for gap in gaps
    ]
    lines: list[str] = []
    if rows:
        table = [_TABLE_HEADER, *rows]
        widths = [max(len(row[column]) for row in table) for column in range(len(_TABLE_HEADER))]
        numeric = {_TABLE_HEADER.index("MISSED")}
        lines.extend(
            "  ".join(
                cell.rjust(width) if column in numeric else cell.ljust(width)
                for column, (cell, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in table
        )
    else:
        lines.append("No gaps.")
    lines.append(render_totals(gap_totals(gaps)))
    return "\n".join(lines) + "\n"


def render_gaps_json(gaps: Sequence[Gap], resolutions: Resolutions | None = None) -> str:
    """Render ``gaps`` as one JSON array of gap log records with their state.

    Each is the record of :mod:`recorder.gaps.records` plus ``state`` and ``resolution``.
    """
    resolved = resolutions or {}
    documents = [gap_document(gap, resolved) for gap in gaps]
    return json.dumps(documents, ensure_ascii=False, indent=1) + "\n"


def render_gaps_csv(gaps: Sequence[Gap], resolutions: Resolutions | None = None) -> str:
    """Render ``gaps`` as CSV with a header row; empty cells for missing ids."""
    resolved = resolutions or {}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for gap in gaps:
        record: dict[str, object] = {**gap_to_record(gap), "state": gap_state(gap, resolved)}
        resolution = resolved.get(gap.key)
        record["resolved_rows"] = None if resolution is None else resolution.rows
        record["resolved_at"] = (
            None if resolution is None else resolution.to_record()["resolved_at"]
        )
        writer.writerow({name: record[name] for name in _CSV_COLUMNS})
    return out.getvalue()
