"""Errors the host raises; the CLI turns each into one clear message and exit status 2."""

from __future__ import annotations

from collections.abc import Iterator

#: set (to 1) for tracebacks instead of one ``error:`` line (``pipeline --debug`` sets it, so
#: worker processes inherit it)
DEBUG_ENV = "PIPELINE_DEBUG"


def debug_wanted() -> bool:
    """True when the user asked for tracebacks (``PIPELINE_DEBUG`` set, not ``0``)."""
    import os

    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


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


def causes(error: BaseException | None) -> Iterator[BaseException]:
    """``error`` and the exceptions it was raised from or while handling, outermost first."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def resource_failure(error: BaseException) -> str | None:
    """What ran out, and what to do, when ``error`` (or what it was raised from) is the
    machine refusing memory or disk; None for anything else.

    Out of memory is torch's allocator refusing a tensor (``DefaultCPUAllocator: can't
    allocate memory``, ``torch.OutOfMemoryError`` on CUDA) or Python's ``MemoryError``; a
    full disk is ``ENOSPC`` (or ``EDQUOT``, over quota) from any write.
    """
    import errno

    for cause in causes(error):
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        if (
            isinstance(cause, MemoryError)
            or type(cause).__name__ == "OutOfMemoryError"
            or (
                isinstance(cause, RuntimeError)
                and ("can't allocate memory" in text or "out of memory" in text.lower())
            )
        ):
            asked = text.split("you tried to allocate ", 1)[-1].split(" bytes")[0]
            size = f" ({int(asked) / 1e9:.3g} GB asked)" if asked.isdigit() else ""
            return (
                f"out of memory{size}: lower train.batch_size or the model's widths "
                "(model.g_width, model.d_width)"
            )
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {cause.filename}" if cause.filename else ""
            return (
                f"no space left on the disk{where}: free some space (or point the store "
                "elsewhere), then resume the run or rerun the command"
            )
    return None


def one_line(error: BaseException) -> str:
    """An unforeseen ``error`` as one line: what ran out and what to do when the machine
    refused memory or disk, else its type and the first line of its message."""
    found = resource_failure(error)
    if found is not None:
        return found
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    if len(first) > 300:
        first = first[:297] + "..."
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
