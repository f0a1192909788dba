"""The command line the scenario scripts share: their options, a scratch directory, the JSON.

``pace_e2e.py`` and ``whole_market_scale.py`` both run subprocesses in a scratch directory
that ``--keep`` keeps, print Markdown and write their figures with ``--json``.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Option = tuple[str, type, object, str]
"""A scenario option: its flag, type, default and help text."""


def options_parser(doc: str | None, options: Sequence[Option]) -> argparse.ArgumentParser:
    """A parser of ``options`` and of ``--tmp-dir``, ``--json`` and ``--keep``."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0] if doc else None)
    for name, kind, default, text in options:
        parser.add_argument(name, type=kind, default=default, help=f"{text} ({default})")
    parser.add_argument("--tmp-dir", type=Path, help="where the scratch directory goes")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser


def progress(text: str) -> None:
    """Write a progress line to stderr."""
    print(text, file=sys.stderr, flush=True)


def in_scratch(
    prefix: str, args: argparse.Namespace, scenario: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """Run ``scenario`` in a fresh scratch directory, removed after unless ``--keep``."""
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=args.tmp_dir))
    progress(f"scratch {scratch}")
    try:
        return scenario(scratch)
    finally:
        if args.keep:
            progress(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def write_json(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    """Write ``figures`` to ``--json``, when given."""
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
        progress(f"wrote {args.json}")


def unpack_commit(commit: str, into: Path) -> Path:
    """``git archive`` of ``commit`` of this repository, unpacked into ``into`` (made here).

    A recorder started with that directory as its working directory (``python -m recorder``)
    runs that commit's package: the "before" of a comparison in one run.
    """
    archive = into.with_suffix(".tar")
    with archive.open("wb") as out:
        subprocess.run(
            ["git", "archive", "--format=tar", commit],
            stdout=out,
            cwd=Path(__file__).resolve().parents[1],
            check=True,
        )
    into.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into
