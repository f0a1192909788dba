"""Chaos: ``recorder run`` killed with SIGKILL at seeded and targeted moments, then judged.

The driver is :mod:`chaos_support`. The short schedule runs in the normal suite; the long one
runs when ``CHAOS_CYCLES`` is set (``CHAOS_SEED``, ``CHAOS_SYMBOLS``
and ``CHAOS_MINUTES``, a time after which no cycle starts, optional), or through
``scripts/chaos.py``.
"""

import itertools
import os
import sys
from pathlib import Path

import pytest
from chaos_judge import Cycle, Figures, Kept, unread_at_stop
from chaos_support import KINDS, ChaosPlan, run_plan, schedule

pytestmark = pytest.mark.e2e

# Not RECORDER_*: the recorder reads those as settings and refuses the ones it does not know.
LONG_CYCLES = int(os.environ.get("CHAOS_CYCLES", "0"))
LONG_MINUTES = float(os.environ.get("CHAOS_MINUTES", "0"))
LONG_TIMEOUT = 300 + (LONG_MINUTES * 60 if LONG_MINUTES else 40 * LONG_CYCLES)


def report(figures: Figures) -> None:
    """Show the figures with the test's output (pytest prints them on a failure)."""
    sys.stderr.write(figures.to_json_text())


def test_every_schedule_has_each_kind_first_and_recovers_only_after_a_crash() -> None:
    for seed in range(50):
        kinds = schedule(ChaosPlan(seed=seed, cycles=40))
        assert len(kinds) == 40
        assert sorted(kinds[: len(KINDS)]) == sorted(KINDS), seed
        # A clean stop (compact) leaves no backlog, and the first start has none to recover.
        assert kinds[0] not in {"recovery", "compact"}, seed
        assert ("compact", "recovery") not in set(itertools.pairwise(kinds)), seed
    assert schedule(ChaosPlan(seed=3)) == schedule(ChaosPlan(seed=3))
    assert len({tuple(schedule(ChaosPlan(seed=seed, cycles=12))) for seed in range(5)}) > 1


def test_a_loss_is_unread_only_after_the_last_kept_row_with_flushes_to_the_stop() -> None:
    # Cycle 0 ran from t=100 to t=200 and kept BTCUSDT up to E=5000, received at t=199.8; the
    # flush interval plus slack is 0.5 s.
    cycles = [Cycle("random", 100.0, 200.0), Cycle("stop", 210.0, 300.0)]
    kept = [Kept({"BTCUSDT": 5_000}, {"BTCUSDT": 199.8}), Kept()]

    def unread(symbol: str, event_time: int, sent_s: float, runs: list[Kept] = kept) -> bool:
        return unread_at_stop(runs, cycles, symbol, event_time, sent_s, 0.5)

    # Sent 10 s before the kill, after every kept row: the recorder had not read it yet.
    assert unread("BTCUSDT", 5_500, 190.0)
    # A hole: a later row of the symbol was kept, so this one was read and then dropped.
    assert not unread("BTCUSDT", 4_000, 150.0)
    # The symbol's newest row is older than the flush interval before the kill: flushes stopped.
    stalled = [Kept({"BTCUSDT": 5_000}, {"BTCUSDT": 195.0}), Kept()]
    assert not unread("BTCUSDT", 5_500, 190.0, stalled)
    # A symbol the recorder kept nothing of, and the last cycle, have no such excuse.
    assert not unread("ETHUSDT", 5_500, 190.0)
    assert not unread("BTCUSDT", 9_000, 250.0)


@pytest.mark.timeout(240)
def test_every_kind_of_kill_loses_nothing_flushed_and_each_outage_is_a_restart_gap(
    tmp_path: Path,
) -> None:
    plan = ChaosPlan(seed=9, cycles=len(KINDS), symbols=12)
    figures = run_plan(plan, tmp_path)
    report(figures)

    assert [cycle["kind"] for cycle in figures.cycles] == [*schedule(plan), "stop"]
    assert sorted(schedule(plan)) == sorted(KINDS)
    assert figures.problems() == []
    moments = {cycle["kind"]: cycle["moment"] for cycle in figures.cycles}
    # Each targeted kill hit what it aimed at, so the checks above cover that moment.
    assert moments["seal"] in {
        "a temporary file was being written",
        "a new file had just been published",
    }
    published, _, total = moments["rotation"].split()[:3]
    assert 0 < int(published) < int(total) == plan.symbols, moments["rotation"]
    assert moments["recovery"].startswith("recovery had published"), moments["recovery"]
    assert moments["compact"] == "compact killed while staging"
    # Every kill lost at most its last flush interval; some of the kills did catch one.
    assert figures.delivered_last_interval > 0
    assert figures.outages == len(KINDS) - 1  # the recovery kill is part of a longer outage
    assert figures.gap_causes.get("restart", 0) == figures.outages * plan.symbols
    assert figures.restart_gaps_between_recordings == figures.outages * plan.symbols


@pytest.mark.skipif(not LONG_CYCLES, reason="the long run: set CHAOS_CYCLES")
@pytest.mark.timeout(LONG_TIMEOUT)
def test_the_long_chaos_run(tmp_path: Path) -> None:
    plan = ChaosPlan(
        seed=int(os.environ.get("CHAOS_SEED", "1")),
        cycles=LONG_CYCLES,
        symbols=int(os.environ.get("CHAOS_SYMBOLS", "24")),
        budget_s=LONG_MINUTES * 60 or float("inf"),
    )
    figures = run_plan(plan, tmp_path)
    report(figures)
    assert figures.problems() == []
