"""Property-based tests of the partition path builder: no symbol can leave the root (issue 9).

The symbol comes over the network; whatever text it is, ``partition_dir`` either refuses it
or returns exactly ``<root>/date=<day>/symbol=<symbol>``, two plain directory levels inside
the root, whose names read back as the same day and symbol.
"""

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from recorder.errors import UnsafePathError
from recorder.storage.paths import PartitionKey, partition_dir
from recorder.symbols import is_valid_symbol

# Text that looks like paths and escapes, as well as any text at all.
path_like = st.lists(
    st.sampled_from(["..", ".", "/", "\\", "%2e", "=", "\x00", "\n", "_", "date=", "A", "币"]),
    max_size=8,
).map("".join)
symbols = (
    st.text(max_size=80) | path_like | st.from_regex(r"[A-Z0-9]{1,20}(_[0-9]{6})?", fullmatch=True)
)
days = st.dates(min_value=dt.date(2017, 1, 1), max_value=dt.date(2099, 12, 31))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("root")


@given(symbol=symbols, day=days)
@example(symbol="../../etc", day=dt.date(2026, 3, 27))
@example(symbol="币安人生USDT", day=dt.date(2026, 3, 27))
@example(symbol="BTCUSDT_260327", day=dt.date(2026, 3, 27))
def test_partition_dir_is_two_plain_levels_inside_the_root_or_refused(
    root: Path, symbol: str, day: dt.date
) -> None:
    try:
        path = partition_dir(root, day, symbol)
    except UnsafePathError:
        assert not is_valid_symbol(symbol)
        return
    assert is_valid_symbol(symbol)
    relative = path.relative_to(root)
    assert relative.parts == (f"date={day.isoformat()}", f"symbol={symbol}")
    assert path.resolve().is_relative_to(root.resolve())
    assert str(PartitionKey(day, symbol)) == relative.as_posix()
    # Hive readers split each level at its first '=': the values come back unchanged.
    assert [part.partition("=")[2] for part in relative.parts] == [day.isoformat(), symbol]
    assert not any(part.startswith((".", "_")) for part in relative.parts)


@given(symbol=symbols)
def test_only_symbols_the_rule_accepts_become_directories(root: Path, symbol: str) -> None:
    day = dt.date(2026, 3, 27)
    if is_valid_symbol(symbol):
        assert partition_dir(root, day, symbol).name == f"symbol={symbol}"
    else:
        with pytest.raises(UnsafePathError):
            partition_dir(root, day, symbol)
