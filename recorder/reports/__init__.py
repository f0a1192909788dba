"""What ``recorder gaps``, ``check``, ``verify`` and ``report`` compute, from files alone.

Pure of the command line: every function takes the dataset root and the current time (where it
matters) and returns a report; :mod:`recorder.cli.reports` parses options and prints. Read-only:
nothing here writes under the root.

* :mod:`recorder.reports.read`: the read side the three share (data files and partitions, newest
  sealed event times, time bounds, :class:`~recorder.reports.read.ExitCode`).
* :mod:`recorder.reports.gaps`: ``gaps``, the logged gaps counted and rendered.
* :mod:`recorder.reports.check`: ``check``, from the gap log and the state files, cheap enough to
  run every minute.
* :mod:`recorder.reports.verify`: ``verify``, every sealed data file read and the gaps in the
  data compared with the gap log, meant for a daily run; what it can find and its report are
  :mod:`recorder.reports.findings`.
* :mod:`recorder.reports.coverage`: ``report``'s numbers, symbol by UTC hour: rows received and
  backfilled, updates expected and missed by cause; :mod:`recorder.reports.picture` draws them
  (plotly, the ``report`` extra) as one self-contained HTML page, and its PNG.

Exit codes, the same for ``check`` and ``verify``: ``0`` healthy, ``1`` a problem was found,
``2`` the check could not be made.
"""
