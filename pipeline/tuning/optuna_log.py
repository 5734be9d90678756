"""Optuna's log without tracebacks: a failed trial is logged by Optuna with its whole
traceback (``Trial N failed with parameters … because of the following error``, 130 lines
for a lost tracking server); the pipeline ends such a failure in one ``error:`` line, so
the traceback is dropped from Optuna's log lines unless ``PIPELINE_DEBUG=1``
(:func:`pipeline.errors.debug_wanted`) asks for it. The warning line itself stays."""

from __future__ import annotations

import logging

from pipeline.errors import debug_wanted


class DropTraceback(logging.Filter):
    """Keeps the record, without its exception's traceback (unless debugging)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not debug_wanted():
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_optuna_tracebacks() -> None:
    """Put :class:`DropTraceback` on the handlers of Optuna's logger (a handler's filter sees
    the records of every ``optuna.*`` logger; a logger's own filter would not), once."""
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, DropTraceback) for f in handler.filters):
            handler.addFilter(DropTraceback())
