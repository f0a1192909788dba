"""The floor of ``compare_clients.py``: the least a recorder of durable Parquet does per frame.

An aiohttp client like ``bare_client.py`` that stores what it reads the way the recorder
stores it, and does nothing else: each frame parsed by msgspec into the recorder's typed payload
and stamped with its arrival time; once a second the events become one write-ahead record batch
(:func:`~recorder.storage.schema.build_wal_batch`, the decimals cast to ``decimal(38, 18)``),
encoded as the recorder's log encodes it, appended and fsynced; when the server closes, the
events become one Parquet file per day and symbol, written with the recorder's options and
fsynced.
No check of any value, no de-duplication, no gap detection, no metrics, no queue between tasks:
what is left of the recorder's CPU per frame once these are gone. It prints ``{"frames": N}``
when the files are written and waits for SIGTERM.

Usage::

    .venv/bin/python scripts/floor_client.py URL DIRECTORY [--arrow-json]

With ``--arrow-json`` the frames of each second are parsed at once by Arrow's JSON reader,
straight into columns (no Python object per event), the fastest parse found: the floor of
what any design could reach with aiohttp and this dataset.
"""

import asyncio
import datetime as dt
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from recorder.event_columns import EventColumns
from recorder.ingest.payload import PayloadWire
from recorder.storage.schema import (
    DATE_COLUMN,
    DECIMAL_TYPE,
    ROW_ORDER,
    SYMBOL_COLUMN,
    WAL_SCHEMA,
    build_wal_batch,
    data_columns,
    parquet_options,
    write_parquet_file,
)
from recorder.storage.wal import encode_batch

FLUSH_INTERVAL = 1.0
"""Seconds between write-ahead appends, as the recorder's default flush interval."""


class _Frame(msgspec.Struct, frozen=True, gc=False):
    """A combined-stream frame: the stream name and one payload."""

    stream: str
    data: PayloadWire


_DECODER = msgspec.json.Decoder(_Frame)


def decode_frame(frame: str) -> PayloadWire:
    """The payload of a combined-stream frame, parsed into the recorder's typed payload."""
    return _DECODER.decode(frame).data


_PAYLOAD = pa.struct(
    [("E", pa.int64()), ("st", pa.int64())]
    + [(key, pa.string()) for key in ("e", "s", "c", "o", "h", "l", "v", "q", "ps")]
)
ARROW_JSON_OPTIONS = pa_json.ParseOptions(
    explicit_schema=pa.schema([("stream", pa.string()), ("data", _PAYLOAD)]),
    unexpected_field_behavior="ignore",
)
"""How Arrow's JSON reader parses combined-stream frames, one per line, into typed columns."""
_DECIMALS = {"c": "close", "o": "open", "h": "high", "l": "low", "v": "volume", "q": "quote_volume"}


def read_frames(frames: list[str]) -> pa.StructArray:
    """The payloads of combined-stream frames as one struct column, parsed by Arrow in C++."""
    text = "\n".join(frames).encode()
    options = pa_json.ReadOptions(use_threads=False, block_size=len(text) + 1)
    table = pa_json.read_json(
        pa.py_buffer(text), read_options=options, parse_options=ARROW_JSON_OPTIONS
    )
    return table.column("data").combine_chunks()


def arrow_wal_batch(frames: list[str], receive_times: list[int]) -> pa.RecordBatch:
    """The write-ahead batch of ``frames`` from Arrow's JSON reader: Arrow's casts, no Python."""
    data = read_frames(frames)
    naive_times = data.field("E").cast(pa.timestamp("ms"))
    columns = {
        "event_time": naive_times.cast(pa.timestamp("ms", tz="UTC")),
        **{name: data.field(key).cast(DECIMAL_TYPE) for key, name in _DECIMALS.items()},
        "receive_time": pa.array(receive_times, pa.timestamp("us", tz="UTC")),
        "pair": data.field("ps"),
        "contract_type": data.field("st").cast(pa.int8()),
        SYMBOL_COLUMN: data.field("s"),
        DATE_COLUMN: naive_times.cast(pa.date32()),
    }
    return pa.RecordBatch.from_arrays(
        [columns[name] for name in WAL_SCHEMA.names], schema=WAL_SCHEMA
    )


class FloorRecorder:
    """Events in, a fsynced log once a second, Parquet per day and symbol at the end.

    Args:
        directory: where the log and the files go.
        arrow_json: parse each second's frames at once with Arrow's JSON reader, straight into
            columns, instead of each frame with msgspec into a payload.
    """

    def __init__(self, directory: Path, *, arrow_json: bool = False) -> None:
        self._directory = directory
        self._arrow_json = arrow_json
        self._log = (directory / "floor.log").open("ab")
        self._frames: list[str] = []
        self._payloads: list[PayloadWire] = []
        self._receive_times: list[int] = []
        self._batches: list[pa.RecordBatch] = []

    def on_frame(self, data: str) -> None:
        """Keep a frame (parsed, unless Arrow parses the batch) with its arrival time."""
        if self._arrow_json:
            self._frames.append(data)
        else:
            self._payloads.append(decode_frame(data))
        self._receive_times.append(time.time_ns() // 1000)

    def flush(self) -> None:
        """Append what was kept to the log as one record batch, then fsync it."""
        if not self._receive_times:
            return
        if self._arrow_json:
            batch = arrow_wal_batch(self._frames, self._receive_times)
        else:
            batch = self._msgspec_batch()
        self._frames, self._payloads, self._receive_times = [], [], []
        self._log.write(encode_batch(batch))
        self._log.flush()
        os.fsync(self._log.fileno())
        self.keep_batch(batch)

    def _msgspec_batch(self) -> pa.RecordBatch:
        columns = EventColumns()
        columns.extend_payloads(self._payloads, self._receive_times)
        return build_wal_batch(columns)

    def keep_batch(self, batch: pa.RecordBatch) -> None:
        """Keep a write-ahead batch for the publication."""
        self._batches.append(batch)

    def publish(self) -> None:
        """Write each day and symbol's events, in the recorder's row order, to its Parquet file."""
        self.flush()
        self._log.close()
        if not self._batches:
            return
        table = pa.Table.from_batches(self._batches)
        partitions = table.group_by([DATE_COLUMN, SYMBOL_COLUMN]).aggregate([]).to_pylist()
        for partition in partitions:
            date: dt.date = partition[DATE_COLUMN]
            symbol: str = partition[SYMBOL_COLUMN]
            chosen = pc.and_(
                pc.equal(table[DATE_COLUMN], pa.scalar(date, pa.date32())),
                pc.equal(table[SYMBOL_COLUMN], symbol),
            )
            rows = table.filter(chosen).sort_by(list(ROW_ORDER))
            options = parquet_options(date, symbol, version=1)
            batches = [data_columns(batch) for batch in rows.to_batches()]
            data = pa.Table.from_batches(batches).cast(options.schema)
            path = self._directory / f"{date.isoformat()}-{symbol}.parquet"
            write_parquet_file(path, data, options)


async def record(url: str, directory: Path, *, arrow_json: bool) -> int:
    """Record text frames until the server closes; return how many."""
    floor = FloorRecorder(directory, arrow_json=arrow_json)
    count = 0
    loop = asyncio.get_running_loop()
    flush_at = loop.time() + FLUSH_INTERVAL
    async with aiohttp.ClientSession() as session, session.ws_connect(url, compress=0) as socket:
        async for message in socket:
            if message.type is aiohttp.WSMsgType.TEXT:
                floor.on_frame(message.data)
                count += 1
                # Checked per frame: the feed never pauses, so a timer task would not run.
                if loop.time() >= flush_at:
                    floor.flush()
                    flush_at += FLUSH_INTERVAL
    floor.publish()
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """Record, print the count as JSON, and exit 0 on SIGTERM."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    arrow_json = "--arrow-json" in arguments
    url, directory = [argument for argument in arguments if argument != "--arrow-json"]
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    frames = asyncio.run(record(url, Path(directory), arrow_json=arrow_json))
    print(json.dumps({"frames": frames}), flush=True)
    signal.sigwait({signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())
