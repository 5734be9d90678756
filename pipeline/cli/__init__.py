"""The ``pipeline`` command: its subcommands, shared options and the UI server."""
