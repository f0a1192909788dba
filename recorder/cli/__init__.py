"""The command line: click commands that parse, call, render and exit; nothing else."""
