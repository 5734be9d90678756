"""Errors the host raises; the CLI turns each into one clear message and exit status 2."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the user should see as one message (no traceback)."""

    exit_code = 2


class ConfigError(PipelineError):
    """An experiment file or override is invalid; ``field`` is the dotted key at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class PluginError(PipelineError):
    """A plugin failed to load, registered something invalid or clashed with another."""


class NonFiniteLossError(PipelineError):
    """Training produced a NaN or infinite loss; the run stops instead of training on garbage."""

    exit_code = 1
