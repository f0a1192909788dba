"""Storage: the dataset's files, from the write-ahead log to sealed, compacted Parquet.

Schema, paths, write-ahead log, instance locking, the writer, sealing policy, publishing,
recovery, quarantine and compaction, one module (or package) each.
"""
