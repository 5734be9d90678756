"""An Optuna journal file's lines: a torn last line repaired, damage elsewhere refused.

Optuna's journal (``optuna.storages.journal.JournalFileBackend``) is one JSON record per
line, each append written under its lock (``<file>.lock``, a symlink lock). Reading, Optuna
skips a last line without its newline (an append in flight) but raises the record's
``JSONDecodeError`` for any other bad line (optuna/optuna#5138, fixed for lines in flight
by #5195). A process killed in the middle of an append, or a file cut short (a full disk, a
copy), leaves a torn last line; the next append then lands behind it on the same line, and
from then on every command that reads the study fails with that raw error.

So before a journal is opened (:meth:`pipeline.stores.storage.StorageLocation.check`):

- every complete line must be a JSON record; the first that is not is refused with one
  line naming the file and the line number (nothing is changed: which records were lost
  is for a person to decide);
- a last line without its newline is, once no append is in flight (under the store's lock,
  :func:`pipeline.tracking.locks.store_lock`, and Optuna's own append lock), torn: the
  whole file is copied to ``<file>.torn-<UTC time>`` and the torn line cut off. It holds
  no whole record, so no trial that was recorded is lost.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import ConfigError

#: a backup of a journal whose torn last line was cut off: ``<file>.torn-<UTC time>``
TORN_SUFFIX = ".torn-"


def first_damaged_line(path: Path) -> tuple[int, str] | None:
    """The number (from 1) and the JSON error of the first complete line of ``path`` that is
    not a JSON record, or None. A last line without its newline is not looked at."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                return None
            try:
                json.loads(line)
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                return number, reason
    return None


def torn_tail(path: Path) -> int | None:
    """The size ``path`` has without a last line that lacks its newline, or None when
    the file ends with a newline (or is empty)."""
    size = path.stat().st_size
    if size == 0:
        return None
    with open(path, "rb") as f:
        block = 1 << 16
        end = size
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return None
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                return start + cut + 1
            end = start
    return 0


def check_journal(
    path: Path,
    error: Callable[[str], ConfigError],
    note: Callable[[str], None] | None = None,
) -> Path | None:
    """Refuse a journal with a damaged line (``error(message)``, naming the file and the
    line) and repair a torn last line (the module doc); returns the backup made, or None.
    ``note`` gets one line about a repair (default: stderr)."""
    damaged = first_damaged_line(path)
    if damaged is not None:
        number, reason = damaged
        raise error(
            f"{str(path)!r} line {number} is damaged ({reason}): Optuna cannot read the "
            "study past it; restore the file from a copy, or remove that line by hand"
        )
    if torn_tail(path) is None:
        return None
    from optuna.storages.journal import JournalFileSymlinkLock

    from pipeline.tracking.locks import store_lock

    with store_lock(str(path), "study"):
        lock = JournalFileSymlinkLock(str(path))  # the lock every Optuna append takes
        lock.acquire()
        try:
            keep = torn_tail(path)  # again: the line may have been an append in flight
            if keep is None:
                return None
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            backup = path.with_name(f"{path.name}{TORN_SUFFIX}{stamp}")
            n = 1
            while backup.exists():
                n += 1
                backup = path.with_name(f"{path.name}{TORN_SUFFIX}{stamp}-{n}")
            shutil.copy2(path, backup)
            cut = path.stat().st_size - keep
            with open(path, "r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
        finally:
            lock.release()
    message = (
        f"note: {str(path)!r} ended in a torn line ({cut} bytes, an append cut short); "
        f"cut it off, the file as it was is kept as {str(backup)!r}"
    )
    (note or (lambda text: print(text, file=sys.stderr)))(message)
    return backup
