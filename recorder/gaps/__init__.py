"""Gaps: the sans-IO detector, the durable gap log and the newest event time per symbol.

The gap log is four modules: ``records`` (a gap as a JSON line), ``layout`` (where its files
live), ``log`` (the durable writer) and ``scan`` (reading a root's log back).
"""
