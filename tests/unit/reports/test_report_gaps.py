"""Tests of :mod:`recorder.reports.gaps`: the totals and the table, JSON and CSV renderings."""

import csv
import io
import json

from recorded_dataset import BTC, ETH, T0, gap

from recorder.gaps.detector import Gap, GapCause
from recorder.gaps.resolutions import Resolution
from recorder.reports.gaps import gap_totals, render_gaps_csv, render_gaps_json, render_gaps_table


def test_totals_count_a_gap_logged_by_two_instances_once() -> None:
    one = gap(BTC, T0, T0 + 10_000, 4, GapCause.DISCONNECT)
    twin = Gap(BTC, T0, T0 + 10_000, 4, GapCause.DISCONNECT, 7, "9.9", "twin")
    quiet = gap(ETH, T0, T0 + 6000, 2, GapCause.QUIET)
    totals = gap_totals([one, twin, quiet])
    assert (totals.gaps, totals.records, totals.missed) == (2, 3, 6)
    assert totals.by_cause[GapCause.DISCONNECT].missed == 4
    assert totals.by_cause[GapCause.STALL].gaps == 0


def test_table_rendering() -> None:
    gaps = [
        Gap(BTC, T0, T0 + 10_000, 4, GapCause.DISCONNECT, T0 * 1000, "0.1", "host-a"),
        Gap("币安人生USDT", T0, T0 + 130_000, 64, GapCause.QUIET, T0 * 1000, None, "host-a"),
    ]
    lines = render_gaps_table(gaps).splitlines()
    assert lines[0].split() == [
        "SYMBOL", "FROM", "TO", "DURATION", "MISSED", "CAUSE", "STATE", "INSTANCE", "CONNECTION"
    ]  # fmt: skip
    assert lines[1].split() == [
        BTC,
        "2024-05-01T10:00:00.000Z",
        "2024-05-01T10:00:10.000Z",
        "10s",
        "4",
        "disconnect",
        "open",
        "host-a",
        "0.1",
    ]
    assert lines[2].split()[3:6] == ["2m10s", "64", "quiet"]
    assert lines[-1] == (
        "Total: 2 gaps, 68 missed updates: disconnect 1 gap/4 missed, quiet 1 gap/64 missed"
    )
    assert render_gaps_table([]).splitlines() == ["No gaps.", "Total: 0 gaps, 0 missed updates"]


def test_json_and_csv_rendering() -> None:
    gaps = [Gap(BTC, T0, T0 + 10_000, 4, GapCause.STALL, T0 * 1000, "0.1", "host-a")]
    [record] = json.loads(render_gaps_json(gaps))
    assert record["from"] == "2024-05-01T10:00:00.000Z"
    assert (record["missed"], record["cause"], record["instance_id"]) == (4, "stall", "host-a")
    assert json.loads(render_gaps_json([])) == []
    rows = list(csv.DictReader(io.StringIO(render_gaps_csv(gaps))))
    assert rows == [
        {
            "symbol": BTC,
            "from": "2024-05-01T10:00:00.000Z",
            "to": "2024-05-01T10:00:10.000Z",
            "from_ms": str(T0),
            "to_ms": str(T0 + 10_000),
            "missed": "4",
            "cause": "stall",
            "detected_at": "2024-05-01T10:00:00.000000Z",
            "connection_id": "0.1",
            "instance_id": "host-a",
            "state": "open",
            "resolved_rows": "",
            "resolved_at": "",
        }
    ]
    assert record["state"] == "open"
    assert record["resolution"] is None


def test_a_resolved_gap_shows_its_resolution() -> None:
    stall = Gap(BTC, T0, T0 + 300_000, 149, GapCause.STALL, T0 * 1000, "0.1", "host-a")
    quiet = gap(ETH, T0, T0 + 6000, 2, GapCause.QUIET)
    resolution = Resolution(stall.key, 4, "backfill", (T0 + 3_600_000) * 1000, "backfill")
    resolved = {stall.key: resolution}
    table = render_gaps_table([stall, quiet], resolved).splitlines()
    assert table[1].split()[6] == "resolved"
    assert table[2].split()[6] == "open"
    [first, second] = json.loads(render_gaps_json([stall, quiet], resolved))
    assert first["state"] == "resolved"
    assert first["resolution"] == {
        "symbol": BTC,
        "from_ms": T0,
        "to_ms": T0 + 300_000,
        "from": "2024-05-01T10:00:00.000Z",
        "to": "2024-05-01T10:05:00.000Z",
        "rows": 4,
        "source": "backfill",
        "resolved_at": "2024-05-01T11:00:00.000000Z",
        "resolved_by": "backfill",
    }
    assert second["state"] == "open"
    rows = list(csv.DictReader(io.StringIO(render_gaps_csv([stall], resolved))))
    assert (rows[0]["state"], rows[0]["resolved_rows"]) == ("resolved", "4")
