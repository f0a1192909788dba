"""``python -m recorder`` is the ``recorder`` command."""

from recorder.cli.main import main

main()
