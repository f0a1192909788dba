"""Compaction as ``<root>/**/*.parquet`` readers (DuckDB, polars) see it: during, after a crash.

The glob enters every directory of the root, ``_`` and ``.`` names included. With the staging
holder next to the root (where the file system allows, as under ``tmp_path``), a glob sees the
live partitions alone at every moment and after a crash at any of them. With the holder inside
the root (the fallback, forced here by :func:`holder_inside`), what compaction stages must not
end in ``.parquet`` except for the two moments the swap cannot do without (see
:mod:`recorder.storage.compact`): the new file renamed to its final name just before the
exchange, and the old parts between the exchange and their deletion.
"""

import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from compact_support import (
    DAY,
    SYMBOLS,
    Crash,
    crash_at,
    live_files,
    redundant_dataset,
    run_compact,
)
from support import READERS, read_rows_with

from recorder.storage.compact.publish import CompactStep
from recorder.storage.compact.report import CompactExitCode
from recorder.storage.compact.staging import (
    STAGING_ROOT_NAME,
    choose_holder,
    legacy_staging_dir,
    outside_holder,
    staging_dir,
)
from recorder.storage.paths import PartitionKey, partition_dir

GLOB_READERS = ("duckdb", "polars")
# From the new file's final rename to the last old part's deletion, a glob can list a
# partition's rows twice: once live, once in the staging directory.
SWAP_WINDOW = frozenset({CompactStep.PREPARED, CompactStep.EXCHANGED, CompactStep.PART_REMOVED})


def glob_rows(reader: str, root: Path) -> Counter[tuple[str, int]]:
    """``(symbol, event_time)`` of every row ``reader`` reads through the SPEC's glob."""
    return Counter((row[0], row[1]) for row in read_rows_with(reader, root))


def staged_parquet(root: Path) -> list[str]:
    """Every ``.parquet`` name outside the live partitions: what a glob must not see."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*.parquet")
        if path.parent.parent.parent != root
        or not path.parent.name.startswith("symbol=")
        or not path.parent.parent.name.startswith("date=")
    )


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return redundant_dataset(tmp_path)


@pytest.fixture
def holder_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs stage inside the root, as where the root's parent is another file system."""
    monkeypatch.setattr(
        "recorder.storage.compact.run.choose_holder", lambda root: root / STAGING_ROOT_NAME
    )


ALL_CRASHES = pytest.mark.parametrize(
    ("step", "occurrence"),
    [
        (CompactStep.TEMP_WRITTEN, 1),
        (CompactStep.STAGED, 2),
        (CompactStep.PREPARED, 1),
        (CompactStep.EXCHANGED, 2),
        (CompactStep.PART_REMOVED, 2),
        (CompactStep.CLEANED, 1),
        (CompactStep.DONE, 1),
    ],
)


@pytest.fixture
def old(dataset: Path) -> Counter[tuple[str, int]]:
    """The rows of the dataset before compaction, as pyarrow's discovery reads them."""
    return glob_rows("pyarrow", dataset)


@pytest.fixture
def expected(old: Counter[tuple[str, int]]) -> Counter[tuple[str, int]]:
    """Each event of the dataset once: what compaction leaves."""
    # The redundant recorders' parts hold copies of the same events: old and new differ.
    assert max(old.values()) > 1
    return Counter(set(old))


def whole_partitions(
    rows: Counter[tuple[str, int]], old: Counter[tuple[str, int]], new: Counter[tuple[str, int]]
) -> bool:
    """Tell whether each symbol's rows are all its old parts' or the compacted file's alone."""

    def of(counter: Counter[tuple[str, int]], symbol: str) -> Counter[tuple[str, int]]:
        return Counter({row: n for row, n in counter.items() if row[0] == symbol})

    return all(of(rows, symbol) in (of(old, symbol), of(new, symbol)) for symbol in SYMBOLS)


def test_the_holder_is_next_to_the_root_where_the_file_system_allows_and_the_probe_leaves_nothing(
    dataset: Path,
) -> None:
    before = sorted(dataset.parent.iterdir()), sorted(dataset.rglob("*"))
    assert choose_holder(dataset) == outside_holder(dataset) == dataset.parent / ".data.compact"
    assert (sorted(dataset.parent.iterdir()), sorted(dataset.rglob("*"))) == before


def test_probes_a_crashed_run_left_are_removed_and_anything_else_is_left_alone(
    dataset: Path,
) -> None:
    # A crash between the probe's rename into the root and its removal leaves it in the root;
    # one before the rename, in the holder next to the root.
    holder = outside_holder(dataset)
    crashed_in_root, crashed_outside = dataset / "_compact-probe-1", holder / "_compact-probe-2"
    not_a_probe = dataset / "_compact-probe-3"
    crashed_in_root.mkdir()
    crashed_outside.mkdir(parents=True)
    not_a_probe.mkdir()
    (not_a_probe / "kept").write_bytes(b"not ours")
    assert choose_holder(dataset) == holder
    assert not crashed_in_root.exists()
    assert not crashed_outside.exists()
    assert (not_a_probe / "kept").read_bytes() == b"not ours"


def test_a_root_that_is_the_top_of_its_file_system_stages_inside_itself(small_disk: Path) -> None:
    # A Docker volume mounted as the root is such a case: a directory next to it is on another
    # file system, where no atomic exchange can reach.
    before = sorted(small_disk.parent.iterdir())
    assert choose_holder(small_disk) == small_disk / STAGING_ROOT_NAME
    assert sorted(small_disk.parent.iterdir()) == before
    assert list(small_disk.iterdir()) == []


def test_with_the_holder_next_to_the_root_a_glob_reads_whole_partitions_at_every_step(
    dataset: Path, old: Counter[tuple[str, int]], expected: Counter[tuple[str, int]]
) -> None:
    holder = outside_holder(dataset)
    staged_there: list[bool] = []
    failures: list[str] = []

    def read_at(step: CompactStep, key: PartitionKey) -> None:
        if staged := staged_parquet(dataset):
            failures.append(f"{step} {key.symbol}: a glob sees {staged}")
        staged_there.append(holder.is_dir())
        for reader in GLOB_READERS:
            rows = glob_rows(reader, dataset)
            if not whole_partitions(rows, old, expected):
                failures.append(f"{step} {key.symbol} {reader}: {sum(rows.values())} rows")

    report = run_compact(dataset, on_step=read_at)

    assert report.exit_code is CompactExitCode.OK
    assert failures == []
    assert any(staged_there)
    assert not holder.exists()
    assert not (dataset / STAGING_ROOT_NAME).exists()
    for reader in READERS:
        assert glob_rows(reader, dataset) == expected, reader


@pytest.mark.usefixtures("holder_inside")
def test_glob_readers_never_fail_and_read_whole_partitions_outside_the_swap(
    dataset: Path, old: Counter[tuple[str, int]], expected: Counter[tuple[str, int]]
) -> None:
    seen: list[tuple[CompactStep, bool]] = []
    failures: list[str] = []

    def read_at(step: CompactStep, key: PartitionKey) -> None:
        staged = staged_parquet(dataset)
        seen.append((step, bool(staged)))
        if staged and step not in SWAP_WINDOW:
            failures.append(f"{step} {key.symbol}: a glob sees {staged}")
        for reader in GLOB_READERS:
            try:
                rows = glob_rows(reader, dataset)
            except Exception as exc:  # noqa: BLE001 - any error of a reader is the failure
                failures.append(f"{step} {key.symbol} {reader}: {exc}")
                continue
            if not staged and not whole_partitions(rows, old, expected):
                failures.append(f"{step} {key.symbol} {reader}: {sum(rows.values())} rows")

    report = run_compact(dataset, on_step=read_at)

    assert report.exit_code is CompactExitCode.OK
    assert failures == []
    outside = {step for step, staged in seen if not staged}
    assert outside == set(CompactStep) - {CompactStep.PREPARED, CompactStep.EXCHANGED}
    for reader in READERS:
        assert glob_rows(reader, dataset) == expected, reader


@ALL_CRASHES
@pytest.mark.parametrize("inside", [False, True], ids=["holder-next-to-root", "holder-inside"])
def test_after_a_crash_no_reader_fails_and_a_glob_adds_at_most_a_file_staged_in_the_swap(
    dataset: Path,
    old: Counter[tuple[str, int]],
    expected: Counter[tuple[str, int]],
    step: CompactStep,
    occurrence: int,
    inside: bool,
    request: pytest.FixtureRequest,
) -> None:
    if inside:
        request.getfixturevalue("holder_inside")
    with pytest.raises(Crash):
        run_compact(dataset, on_step=crash_at(step, occurrence))

    staged = staged_parquet(dataset)
    # Next to the root, nothing staged is ever under it.
    assert bool(staged) is (inside and step in SWAP_WINDOW)
    assert all(name.startswith(f"{STAGING_ROOT_NAME}/date=") for name in staged)
    live = glob_rows("pyarrow", dataset)
    assert whole_partitions(live, old, expected)
    assert glob_rows("pandas", dataset) == live
    staged_rows = Counter[tuple[str, int]]()
    for name in staged:
        table = pq.read_table(dataset / name, columns=["event_time"])
        symbol = Path(name).parent.name.removeprefix("symbol=")
        staged_rows.update((symbol, int(t.timestamp() * 1000 + 0.5)) for t in table[0].to_pylist())
    for reader in GLOB_READERS:
        assert glob_rows(reader, dataset) == live + staged_rows, reader

    assert run_compact(dataset).exit_code is CompactExitCode.OK
    for reader in READERS:
        assert glob_rows(reader, dataset) == expected, reader
    assert staged_parquet(dataset) == []
    assert not (dataset / STAGING_ROOT_NAME).exists()
    assert not outside_holder(dataset).exists()


@pytest.mark.parametrize(
    ("step", "occurrence"),
    [
        (CompactStep.TEMP_WRITTEN, 1),
        (CompactStep.PREPARED, 1),
        (CompactStep.EXCHANGED, 1),
        (CompactStep.PART_REMOVED, 4),
        (CompactStep.CLEANED, 2),
    ],
)
@pytest.mark.usefixtures("holder_inside")
def test_what_an_earlier_version_left_in_the_day_directory_is_finished_or_undone(
    dataset: Path, expected: Counter[tuple[str, int]], step: CompactStep, occurrence: int
) -> None:
    with pytest.raises(Crash):
        run_compact(dataset, on_step=crash_at(step, occurrence))
    # Earlier versions staged in date=D/.symbol=X.compact, with the same contents.
    moved = 0
    for symbol in SYMBOLS:
        live = partition_dir(dataset, DAY, symbol)
        if staging_dir(live).is_dir():
            staging_dir(live).rename(legacy_staging_dir(live))
            moved += 1
    shutil.rmtree(dataset / STAGING_ROOT_NAME, ignore_errors=True)
    assert moved == (step is not CompactStep.CLEANED)

    report = run_compact(dataset)

    assert report.exit_code is CompactExitCode.OK
    assert len(report.recovered) == 1
    assert not report.problems
    for reader in READERS:
        assert glob_rows(reader, dataset) == expected, reader
    assert all(len(names) == 1 for names in live_files(dataset).values())
    assert not list(dataset.rglob(".*"))
