"""Gaps: the sans-IO detector, the durable gap log and the newest event time per symbol."""
