"""Checkpoints: both nets, both optimizers, the step and every RNG state, written atomically.

Spectral-norm ``u``/``v`` vectors are buffers of torch's parametrization, so they are
part of the critic's ``state_dict`` and travel with it.

A checkpoint holds only tensors and plain values (dicts, lists, tuples, ints, floats,
str, bool, None), so it loads with ``torch.load(weights_only=True)``: a file from
somebody else (``--resume``, a shared MLflow store) can hand back data but never run
code. The RNG states of numpy and Python's ``random`` (tuples with numpy arrays) are
stored as tensors and lists for that reason.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
import tempfile
import threading
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.tracking.client import RunTracker

#: bumped when the layout changes; 2: plain-data RNG states, loadable with weights_only
FORMAT = 2

#: top-level keys every checkpoint has, with the type each must have
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format": int,
    "step": int,
    "generator": dict,
    "critic": dict,
    "optimizer_generator": dict,
    "optimizer_critic": dict,
    "rng": dict,
    "config": dict,
}
RNG_KEYS = ("torch", "numpy", "python", "data", "train")


class CheckpointError(PipelineError):
    """A file that is not a checkpoint this version can load safely; names the file."""


def rng_states(data_generator: torch.Generator, train_generator: torch.Generator) -> dict[str, Any]:
    """Every RNG state as tensors and plain values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            # uint32 words as int64: torch.load(weights_only) knows every int dtype
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "state": list(internal), "gauss_next": gauss_next},
        "data": data_generator.get_state(),
        "train": train_generator.get_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(
    states: dict[str, Any], data_generator: torch.Generator, train_generator: torch.Generator
) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            int(n["pos"]),
            int(n["has_gauss"]),
            float(n["cached_gaussian"]),
        )
    )
    p = states["python"]
    random.setstate((int(p["version"]), tuple(p["state"]), p["gauss_next"]))
    data_generator.set_state(states["data"])
    train_generator.set_state(states["train"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` to a temp file beside ``path``, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class RunCheckpoints:
    """The checkpoint of a run in progress, logged to it as ``checkpoint/checkpoint.pt``.

    :meth:`save` copies the state to host memory in the loop (it must be the state of
    this step; a copy costs about a third of ``torch.save``) and leaves writing and
    uploading to the tracker's background thread. At most one copy waits: a newer one
    replaces a copy not yet written, so a slow store never piles up states. Each file is
    written into a folder of its own and removed once uploaded, so no file is rewritten
    while it is being uploaded; the upload replaces the run's previous artifact. Untracked,
    the checkpoint is written to ``workdir/checkpoint.pt`` at once.
    """

    ARTIFACT_PATH = "checkpoint"

    def __init__(self, workdir: Path, tracker: RunTracker | None) -> None:
        self.workdir = workdir
        self.tracker = tracker
        self._count = 0
        self._lock = threading.Lock()
        #: (number, host copy of the state) not yet written
        self._waiting: tuple[int, dict[str, Any]] | None = None

    def save(self, state: dict[str, Any]) -> None:
        """Keep ``state`` (copied now); write and log it on the tracker's background thread."""
        tracker = self.tracker
        if tracker is None:
            save_checkpoint(self.workdir / "checkpoint.pt", state)
            return
        copy = _host_copy(state)
        with self._lock:
            self._count += 1
            self._waiting = (self._count, copy)
        tracker.submit(self._write_waiting)

    def _write_waiting(self) -> None:
        with self._lock:
            if self._waiting is None:  # a later job took it, or save_and_log replaced it
                return
            number, state = self._waiting
            self._waiting = None
        self._write_and_log(number, state)

    def _write_and_log(self, number: int, state: dict[str, Any]) -> None:
        assert self.tracker is not None
        folder = self.workdir / "checkpoints" / str(number)
        try:
            path = save_checkpoint(folder / "checkpoint.pt", state)
            self.tracker.log_artifact(path, self.ARTIFACT_PATH)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def save_and_log(self, state: dict[str, Any]) -> None:
        """Write ``state`` and log it before returning (the last word of a stopped run).

        Waits for the tracker's queued work first, so an earlier upload cannot land after
        this one; a failure of that work is raised after this checkpoint is logged.
        """
        tracker = self.tracker
        if tracker is None:
            save_checkpoint(self.workdir / "checkpoint.pt", state)
            return
        with self._lock:
            self._count += 1
            number = self._count
            self._waiting = None  # older than this state: never written
        queued_error: Exception | None = None
        try:
            tracker.drain()
        except Exception as exc:
            queued_error = exc
        self._write_and_log(number, state)
        if queued_error is not None:
            raise queued_error


def _host_copy(obj: Any) -> Any:
    """Tensors copied to CPU memory (the live ones keep training), containers rebuilt."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):  # an OrderedDict stays one, with its ``_metadata`` (versions)
        out = type(obj)((k, _host_copy(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = _host_copy(obj._metadata)
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(_host_copy(v) for v in obj)
    return obj


def load_checkpoint(path: str | Path, shown_as: str | None = None) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` and check its layout.

    Raises :class:`CheckpointError` naming the file (``shown_as``, default ``path``) in
    one line for anything else: a pickle that asks for code (nothing of it runs), junk, a
    truncated file, an older format, a missing key.
    """
    name = shown_as or str(path)
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it does not expect; the error says enough
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{name}: {_refusal(exc)}") from None
    except OSError as exc:
        raise CheckpointError(f"{name}: cannot read it: {exc.strerror or exc}") from None
    _check_layout(name, state)
    return state


def _refusal(exc: BaseException) -> str:
    """Torch's multi-paragraph weights_only error, as one short reason."""
    message = str(exc)
    found = re.search(r"GLOBAL (\S+)", message)
    if found:
        name = found.group(1)
        if name.startswith("numpy"):
            return (
                f"an older checkpoint format (RNG states pickled as numpy objects, {name}) "
                "that cannot be loaded safely; resume it with the version that wrote it"
            )
        return (
            f"refused: the file asks to call {name}, which no checkpoint does "
            "(loaded with torch.load(weights_only=True), so nothing in it ran)"
        )
    if isinstance(exc, EOFError) or not message:
        return "not a checkpoint (empty or truncated file)"
    if "Weights only load failed" in message:
        detail = re.search(r"(Unsupported [^\n]*)", message)
        reason = detail.group(1).strip() if detail else "not plain data"
        return f"not a checkpoint ({reason}; nothing in it ran)"
    return f"not a checkpoint ({message.splitlines()[0]})"


def _check_layout(name: str, state: Any) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{name}: not a checkpoint (holds a {type(state).__name__})")
    if "format" not in state:
        raise CheckpointError(
            f"{name}: an older checkpoint format (no 'format' key); "
            "resume it with the version that wrote it"
        )
    if state["format"] != FORMAT:
        raise CheckpointError(
            f"{name}: checkpoint format {state['format']!r}, this version reads {FORMAT}"
        )
    for key, kind in REQUIRED.items():
        if key not in state:
            raise CheckpointError(f"{name}: not a complete checkpoint: no {key!r}")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise CheckpointError(
                f"{name}: not a complete checkpoint: {key!r} is a {type(state[key]).__name__}"
            )
    missing = [k for k in RNG_KEYS if k not in state["rng"]]
    if missing:
        raise CheckpointError(f"{name}: not a complete checkpoint: no rng state {missing[0]!r}")
    if state["step"] < 0:
        raise CheckpointError(f"{name}: not a checkpoint: step {state['step']}")
