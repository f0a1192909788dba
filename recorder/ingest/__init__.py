"""Ingest: the websocket source, its connection policy, decoding, de-duplication, the pipeline."""
