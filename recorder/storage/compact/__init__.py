"""``recorder compact``: merge each finished UTC day's part files into one file per symbol-day.

A symbol-day partition collects many part files: one per seal (hourly, day end, stop) of every
recorder instance that wrote it, and redundant instances write the same events. Compaction
rewrites each partition of a finished day as one sorted, de-duplicated file.

**Which days.** By default every day strictly before today (``--before today``); ``--before D``
takes the days before ``D``, ``--date D`` exactly ``D``. A selected day is compacted only when
all of these hold, and is otherwise *deferred* (nothing touched, exit 0; a later run takes it):

1. it is strictly before today, UTC (by the wall clock of the machine running ``compact``);
2. the wall clock has passed midnight at its end plus ``storage.day_grace``, the time after
   which a recorder seals the day's partitions;
3. no write-ahead segment under ``<root>/_wal/`` (of any instance, running or not) holds a row
   of that day. A running recorder deletes a segment at its next rotation
   (``storage.max_file_age``) once everything in it is sealed; a stopped or crashed instance's
   segments are recovered, published and deleted by the next ``recorder run`` on the root.
   Rows still in the log would otherwise be published after compaction, and a part file that
   its crashed writer had not yet marked as sealed would be published a second time.

The segments are read *after* the day's part files are listed, so every listed file is either
marked sealed or still visible in a segment. An event of a compacted day that arrives later
(the recorder accepts late events) becomes a new part next to the compacted file; the next run
merges the two.

**Merge.** Rows of every part are sorted by ``event_time`` (then ``receive_time``) and one row is
kept per ``event_time``: an event is ``(symbol, E)``, and the symbol is the partition's. The kept
row is the one received first. Rows of other instances that carry the same values (only
``receive_time`` differs) are *duplicates*; rows with the same ``E`` but another value are
*conflicts*: they are dropped too, because no event may appear twice, and counted in the report
so that an operator sees them. Before anything is published the new file is read back from disk
and compared with the merged rows value for value, and its event times must be exactly the
distinct event times of the inputs, strictly increasing.

The new file is written with the recorder's Parquet options and key-value metadata (schema
version, recorder version, symbol, date) plus
:data:`~recorder.storage.compact.merge.METADATA_COMPACTED_FROM`, the number of files merged. It
is named like any data file (:func:`recorder.storage.paths.data_file_name`), with
:data:`~recorder.storage.compact.staging.COMPACTOR_ID` in the instance position. A partition
that already is a single file carrying that key is skipped, so running ``compact`` twice is a
no-op the second time.

**Publication.** For partition ``date=D/symbol=X``:

1. the new file is written in a staging directory ``<holder>/date=D/symbol=X``
   (:func:`~recorder.storage.compact.staging.staging_dir`; the holder is next to the root,
   ``<parent>/.<root name>.compact``, where the file system allows, else ``<root>/_compact``:
   :func:`~recorder.storage.compact.staging.choose_holder`) under a temporary name ending in
   ``.tmp``, fsynced, read back and verified; a manifest
   (:data:`~recorder.storage.compact.staging.MANIFEST_NAME`: output and input names) is
   written beside it; the file is renamed to its final name and the staging directory fsynced;
2. the staging directory and the live ``symbol=X`` directory are swapped in one atomic step,
   ``renameat2(RENAME_EXCHANGE)``, and both parents are fsynced: ``symbol=X`` now holds the new
   file, the staging directory the old parts;
3. the old parts are deleted (any other file found there, such as a part a recorder published
   in the meantime, is moved back into ``symbol=X``), the staging directory is removed (and
   its day directory and the holder once empty), and finally the manifest.

So a reader that lists ``symbol=X`` sees either every old part or the new file, never both and
never neither. With the holder next to the root that holds for every reader of the root,
``<root>/**/*.parquet`` globs (DuckDB, polars) included: nothing of a run is under the root but
the live partitions, at any moment and after a crash at any moment.

With the holder inside the root (a root at the top of its file system, such as a Docker volume
mounted as the root, or a read-only parent), it holds for readers that skip names starting
with ``.`` or ``_``: :func:`pyarrow.dataset.dataset`, :func:`pandas.read_parquet`, Spark, and
the glob ``<root>/date=*/symbol=*/*.parquet``. A ``<root>/**/*.parquet`` glob also enters
``_compact``; because it is laid out ``date=D/symbol=X`` like the dataset, such a glob never
fails on it, and because nothing there ends in ``.parquet`` except from step 1's final rename
to the end of step 3's deletions (three directory fsyncs, the swap and one unlink per part), it
sees the data files alone at every other moment, and after a crash at any other moment. Inside
those two windows it reads the partition twice, and a crash inside them leaves the copy in
``_compact`` until the next run: the old parts must be somewhere on the root's file system
until they are deleted, and there the root itself is the only such place. A query that listed
the old parts just before the swap and opens one after its deletion fails with "file not
found"; running it again reads the new file. Platforms without ``renameat2`` (it needs Linux
3.15 and a file system that supports the exchange) are refused with a clear error: there is no
other way to switch without a moment of both or neither.

**Crash safety.** Whatever step a crash (kill -9, power loss) interrupts, the live directory
holds a complete partition, old or new. Every run first finishes what an interrupted run left:
a staging directory (in either holder) whose live partition holds no manifest was never
swapped and is removed;
one whose live partition holds the manifest was swapped, and its cleanup is completed. The
staging directories of earlier versions, ``date=D/.symbol=X.compact``, are resolved the same
way, so a root written by them heals. Runs are serialised
by an exclusive ``flock`` on the root directory.

**Refusal.** Before touching a day, the footer and schema of every file in it are read; if one
cannot be read or is not the recorder's schema, the whole day is *refused* and left as it is.
Damage found only later, in a file's data pages, refuses that partition, untouched.

**Exit codes** (:class:`~recorder.storage.compact.report.CompactExitCode`): 0 done or nothing
to do (deferred days included), 1 a partition failed (an I/O error, a failed verification; it
is left as it was or, if the new file is already live, finished by the next run), 2 cannot run
(bad root, another compaction running, unreadable write-ahead log, no atomic exchange) or a day
or partition was refused as unreadable.

**Modules**, in the order of a run (:func:`recorder.storage.compact.run.compact`):

- :mod:`~recorder.storage.compact.run`: one run: the lock, then each step below, in order;
- :mod:`~recorder.storage.compact.recovery`: what an interrupted run left, finished or undone;
- :mod:`~recorder.storage.compact.listing`: the days, partitions and data files of a root;
- :mod:`~recorder.storage.compact.selection`: which days are taken and which must wait;
- :mod:`~recorder.storage.compact.merge`: a partition's rows merged, written and checked;
- :mod:`~recorder.storage.compact.publish`: the new file built aside, swapped in, old parts gone;
- :mod:`~recorder.storage.compact.staging`: the staging directory, the manifest and the names;
- :mod:`~recorder.storage.compact.swap`: the atomic exchange of two directories;
- :mod:`~recorder.storage.compact.report`: the outcome, as text and JSON, and the exit code.
"""
