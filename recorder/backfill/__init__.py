"""``recorder backfill``: rows rebuilt for logged gaps from one-minute klines.

:mod:`~recorder.backfill.rebuild` (sans-IO) says which minutes a gap holds, which candles they
need and what row each minute becomes.
"""
