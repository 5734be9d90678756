"""Which torch device a training runs on (``train.device``, ``--device``)."""

from __future__ import annotations

import torch

from pipeline.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda:N`` must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("train.device", f"{name!r} asked for, but CUDA is not available")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                "train.device", f"{name!r}: only {torch.cuda.device_count()} CUDA device(s)"
            )
    return torch.device(name)
