"""``python -m pipeline.cli``: the ``pipeline`` command (worker processes start it so)."""

from pipeline.cli.commands import main

main()
