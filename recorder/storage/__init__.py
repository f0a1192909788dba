"""Storage: the schema, paths, write-ahead log, writer, sealing, quarantine and compaction."""
