"""IDX files and MNIST-style folders (shared by the ``mnist`` and ``fashion_mnist`` plugins).

No plugin here, no hookimpl. The IDX format is the one of LeCun, Cortes & Burges, "THE
MNIST DATABASE of handwritten digits" (yann.lecun.com/exdb/mnist, section "FILE FORMATS
FOR THE MNIST DATABASE"), also used unchanged by Fashion-MNIST (Xiao, Rasul & Vollgraf
2017, arXiv:1708.07747, and the zalandoresearch/fashion-mnist README):

- bytes 0–1: zero; byte 2: the element type (0x08 unsigned byte, 0x09 signed byte,
  0x0B short, 0x0C int, 0x0D float, 0x0E double); byte 3: the number of dimensions;
- then one big-endian unsigned 32-bit size per dimension;
- then the data, big-endian, C order (last index changes fastest).

Files may be gzip-compressed (as distributed: ``train-images-idx3-ubyte.gz``); a file is
read as gzip when it starts with the gzip magic bytes ``1f 8b``, whatever its name.
Nothing is ever downloaded: a missing folder or file raises :class:`DatasetFilesMissing`,
whose message lists exactly which files to put in which folder.
"""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pipeline.types import ConfigError, ImageDataset, Settings

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor

#: IDX element type code → numpy dtype string (big-endian, as stored)
IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

#: the file names of the MNIST distribution (Fashion-MNIST uses the same ones)
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
_GZIP_MAGIC = b"\x1f\x8b"


class DatasetFilesMissing(ConfigError, FileNotFoundError):
    """A dataset's local files are missing; the message names the files and the folder.

    A :class:`pipeline.types.ConfigError` (so the CLI prints one line and exits with
    status 2, creating no run) and a :class:`FileNotFoundError`.
    """


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (plain or gzip), in native byte order."""
    import numpy as np

    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(
            f"{path}: not an IDX file (magic {raw[:4].hex() or 'missing'}; expected 00 00, "
            f"a type code in {sorted(f'{c:#04x}' for c in IDX_DTYPES)} and a dimension count)"
        )
    dtype, ndim = np.dtype(IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header cut short ({len(raw)} bytes for {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = math.prod(dims)
    if len(raw) - header != count * dtype.itemsize:
        raise ValueError(
            f"{path}: IDX data has {len(raw) - header} bytes, the header {dims} of "
            f"{dtype} needs {count * dtype.itemsize}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``."""
    import numpy as np

    code_of = {np.dtype(dtype).newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    path = Path(path)
    array = np.ascontiguousarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in code_of:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    code = code_of[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    raw = header + array.astype(IDX_DTYPES[code]).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)
    return path


def resolve_root(root: str | None, env_var: str, default: str) -> Path:
    """The data folder: the ``root`` setting, else ``$env_var``, else ``default``."""
    chosen = root if root is not None else os.environ.get(env_var) or default
    return Path(chosen).expanduser()


def find_idx(root: Path, stem: str) -> Path | None:
    """``root/stem`` or ``root/stem.gz``, whichever exists (the plain file first)."""
    for name in (stem, stem + ".gz"):
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None


def _images_and_labels(images_path: Path, labels_path: Path) -> tuple[Tensor, Tensor]:
    import numpy as np
    import torch

    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected unsigned-byte images (n, h, w), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"{labels_path}: expected {len(images)} labels (one per image in "
            f"{images_path.name}), got shape {labels.shape}"
        )
    pixels = torch.from_numpy(images.copy()).to(torch.float32)
    scaled = (pixels / 127.5 - 1.0).unsqueeze(1).contiguous()  # 0..255 -> [-1, 1]
    return scaled, torch.from_numpy(labels.astype(np.int64))


def load_mnist_folder(
    root: Path, *, dataset: str, env_var: str
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Training images and labels, and the t10k ones when present, from an MNIST-style folder.

    Images come back as float32 ``(n, 1, h, w)`` scaled from 0..255 to [-1, 1] as
    ``x/127.5 - 1``, labels as int64. The test files are optional, but both or neither.
    """
    how = (
        f"Put the {dataset} IDX files (as distributed, gzip or not) in {root}: "
        f"{TRAIN_IMAGES}[.gz] and {TRAIN_LABELS}[.gz] (required), "
        f"{TEST_IMAGES}[.gz] and {TEST_LABELS}[.gz] (optional, held-out set); "
        f"or point the dataset's 'root' setting or ${env_var} at the folder that holds them. "
        "Nothing is downloaded."
    )
    if not root.is_dir():
        raise DatasetFilesMissing("dataset.root", f"no folder {root}. {how}")
    train_images, train_labels = find_idx(root, TRAIN_IMAGES), find_idx(root, TRAIN_LABELS)
    missing = [n for n, p in ((TRAIN_IMAGES, train_images), (TRAIN_LABELS, train_labels)) if not p]
    if missing:
        names = " and ".join(f"{n}[.gz]" for n in missing)
        raise DatasetFilesMissing("dataset.root", f"{names} not found in {root}. {how}")
    assert train_images is not None and train_labels is not None
    images, labels = _images_and_labels(train_images, train_labels)
    test_images, test_labels = find_idx(root, TEST_IMAGES), find_idx(root, TEST_LABELS)
    if (test_images is None) != (test_labels is None):
        present, absent = (
            (TEST_IMAGES, TEST_LABELS) if test_images is not None else (TEST_LABELS, TEST_IMAGES)
        )
        raise DatasetFilesMissing(
            "dataset.root",
            f"{present} found in {root} but not {absent}[.gz]: add it, or remove both. {how}",
        )
    if test_images is None or test_labels is None:
        return images, labels, None, None
    held_images, held_labels = _images_and_labels(test_images, test_labels)
    if held_images.shape[1:] != images.shape[1:]:
        raise ValueError(
            f"{test_images}: images of size {tuple(held_images.shape[2:])}, but the training "
            f"images are {tuple(images.shape[2:])}"
        )
    return images, labels, held_images, held_labels


class IdxFolderSettings(Settings):
    #: folder holding the IDX files; unset: the plugin's environment variable, else its
    #: default folder under ~/data
    root: str | None = None


class IdxFolderDataset(ImageDataset):
    """Base of the MNIST-style plugins: subclasses set ``name``, ``env_var``,
    ``default_root``, ``dataset_title`` and ``classes``.

    ``images``/``labels`` are the training set (what ``sample`` draws from, uniformly with
    replacement); ``heldout_images``/``heldout_labels`` the t10k set, or None when its
    files are absent. One sample has shape ``(1, h, w)`` (``(1, 28, 28)`` for MNIST).
    """

    Settings = IdxFolderSettings
    env_var: ClassVar[str]
    default_root: ClassVar[str]
    dataset_title: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]

    def __init__(self, settings: IdxFolderSettings | None = None) -> None:
        super().__init__(settings)
        self.root = resolve_root(self.settings.root, self.env_var, self.default_root)
        images, labels, held_images, held_labels = load_mnist_folder(
            self.root, dataset=self.dataset_title, env_var=self.env_var
        )
        self.images, self.labels = images, labels
        self.heldout_images, self.heldout_labels = held_images, held_labels
        self.shape = tuple(images.shape[1:])
        self.centers = None
        self.std = None

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        from pipeline_plugins.datasets.mixture import sample_rows

        return sample_rows(self.images, n, generator)
