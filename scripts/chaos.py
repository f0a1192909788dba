"""Run the chaos schedule of ``tests/chaos_support.py`` at any length and print its figures.

``recorder simulate`` and ``recorder run`` as subprocesses on loopback; ``--cycles`` kills of
the recorder with SIGKILL at seeded and targeted moments (a seal, a rotation, start-up recovery,
a crashed ``recorder compact``), then a clean stop; the dataset read with pandas, DuckDB, polars
and pyarrow and the gap log with DuckDB are compared with the simulator's ledger.

Usage::

    .venv/bin/python scripts/chaos.py [--seed 1] [--cycles 40] [--symbols 24] [--minutes M]
        [--json FILE] [--tmp-dir DIR] [--keep]

Markdown on stdout; exit 1 when the recorder lost, duplicated or failed to log anything the
test suite's chaos test would fail on.
"""

import argparse
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

# The driver lives with the tests, which run it too; ``tests/`` holds its own imports.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chaos_judge import Figures
from chaos_support import ChaosPlan, run_plan


def moment_kind(moment: str) -> str:
    """A moment without its numbers, so that like moments are counted together."""
    return " ".join("N" if word.replace(".", "").isdigit() else word for word in moment.split())


def render(figures: Figures) -> str:
    """The figures as Markdown."""
    plan = figures.plan
    lines = [
        f"## Chaos run: seed {plan['seed']}, {len(figures.cycles) - 1} cycles, "
        f"{plan['symbols']} symbols, "
        f"speed {plan['speed']}, flush_interval {plan['flush_interval']} s, "
        f"max_file_age {plan['max_file_age']} s, margin {plan['margin']} s\n",
        "| cycle kind | moment | count |",
        "|---|---|---|",
    ]
    moments = Counter((c["kind"], moment_kind(c["moment"])) for c in figures.cycles)
    lines += [f"| {kind} | {moment} | {n} |" for (kind, moment), n in sorted(moments.items())]
    rows = " / ".join(f"{reader} {count:,}" for reader, count in figures.rows.items())
    causes = ", ".join(f"{cause} {n}" for cause, n in sorted(figures.gap_causes.items()))
    lines += [
        "\n| measure | value |",
        "|---|---|",
        f"| wall time | {figures.wall_s:.0f} s |",
        f"| events generated / delivered to a recorder | {figures.generated:,} / "
        f"{figures.delivered:,} |",
        f"| rows read | {rows} |",
        f"| duplicates / rows never delivered | {figures.duplicates} / "
        f"{figures.rows_not_delivered} |",
        f"| lost, delivered more than flush_interval + margin before a stop, and not unread "
        f"(must be 0) | "
        f"{len(figures.lost_old)} |",
        f"| of those sent earlier, unread by a recorder lagging behind its socket at the stop "
        f"(after its last kept row of the symbol, and that row received within flush_interval "
        f"+ margin of the stop): count, most seconds sent before the stop | "
        f"{len(figures.lost_unread)}, "
        f"{max((lost[2] for lost in figures.lost_unread), default=0.0):.2f} s |",
        f"| lost, delivered in the last flush_interval + margin before a stop | "
        f"{figures.lost_last_interval} of {figures.delivered_last_interval} |",
        f"| lost, written into a killed recorder's socket after the kill | "
        f"{figures.lost_after_kill} |",
        f"| outages / restart gaps logged / from one recorder's last row to the next's first | "
        f"{figures.outages} / {figures.restart_gaps} / {figures.restart_gaps_between_recordings} |",
        f"| consecutive recordings of a symbol with no such gap; events in no restart gap | "
        f"{len(figures.missing_restart_gaps)}; {len(figures.uncovered)} |",
        f"| gap records by cause | {causes} |",
        f"| `.parquet` files left in staging by killed compactions | "
        f"{figures.staged_parquet_after_compact_kill} |",
        f"| `recorder verify` | exit {figures.verify_exit}: "
        f"{figures.verify_output.strip().splitlines()[-1:]} |",
    ]
    problems = figures.problems()
    lines.append("\nProblems: " + ("; ".join(problems) if problems else "none"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the plan, print the figures, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    defaults = ChaosPlan()
    parser.add_argument("--seed", type=int, default=1, help="seeds the schedule (1)")
    parser.add_argument("--cycles", type=int, default=40, help="recorder kills (40)")
    parser.add_argument("--symbols", type=int, default=24, help="contracts (24)")
    parser.add_argument("--max-file-age", type=float, default=defaults.max_file_age)
    parser.add_argument("--minutes", type=float, help="start no cycle after this (none)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--tmp-dir", type=Path, help="where the scratch directory goes")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    plan = ChaosPlan(
        seed=args.seed,
        cycles=args.cycles,
        symbols=args.symbols,
        max_file_age=args.max_file_age,
        budget_s=float("inf") if args.minutes is None else args.minutes * 60,
    )
    scratch = Path(tempfile.mkdtemp(prefix="recorder-chaos-", dir=args.tmp_dir))
    try:
        figures = run_plan(plan, scratch)
    finally:
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print(render(figures))
    if args.json is not None:
        args.json.write_text(figures.to_json_text(), encoding="utf-8")
    return 1 if figures.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
