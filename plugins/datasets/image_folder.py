"""image_folder: PNG/JPEG images from a local folder, optionally one subfolder per class.

Layouts (the one of torchvision's ``ImageFolder``, read here with Pillow so torchvision is
not needed):

- ``root/*.png`` — unlabelled images: ``labels`` is None (the classifier-feature metrics
  then do not apply);
- ``root/<class>/*.png`` — one subfolder per class: ``labels`` index the sorted subfolder
  names, kept in ``classes``. Images directly in ``root`` beside class folders are an
  error, since their class is unknown.

Files ending in ``.png``, ``.jpg`` or ``.jpeg`` (any case) are read in sorted path order,
converted to greyscale (``grayscale: true``, Pillow mode ``L``, one channel) or RGB (three
channels), and scaled from 0..255 to [-1, 1] as ``x/127.5 - 1``. With ``size`` set, each
image is centre-cropped to a square and resized to ``size × size`` with Lanczos
resampling (the usual preparation of square GAN training images, as in DCGAN's,
Radford et al. 2016); without it every image must already have the same size. Pick a size the model
supports (``dcgan``: 8, 16, 28, 32 or 64). The folder has no held-out split:
``heldout_images`` is None, so the image metrics' classifier holds out a seeded 20 % of
the labelled images itself. ``sample`` draws images uniformly with replacement.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline import hookimpl
from pipeline.types import ConfigError, ImageDataset, Settings
from pipeline_plugins.datasets.idx import DatasetFilesMissing

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor

#: file endings read as images (lower-cased before comparison)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageFolderSettings(Settings):
    #: the folder of images (or of one subfolder per class)
    root: str
    #: side of the square the images are centre-cropped and resized to; None: as stored
    size: int | None = Field(default=None, ge=1)
    #: one greyscale channel (True) or three RGB channels (False)
    grayscale: bool = True


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load(path: Path, mode: str, size: int | None) -> np.ndarray:
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert(mode)
    except OSError as exc:
        raise ConfigError("dataset.root", f"cannot read image {path}: {exc}") from None
    if size is not None:
        w, h = image.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array  # (h, w, c)


class ImageFolder(ImageDataset):
    name = "image_folder"
    description = "PNG/JPEG files in a local folder (class subfolders → labels), scaled to [-1, 1]"
    Settings = ImageFolderSettings

    def __init__(self, settings: ImageFolderSettings | None = None) -> None:
        if settings is None:
            raise ConfigError("dataset.root", "image_folder needs a 'root' folder")
        super().__init__(settings)
        s = self.settings
        root = Path(s.root).expanduser()
        how = (
            f"Put PNG or JPEG files ({', '.join(IMAGE_SUFFIXES)}) in {root}, either directly "
            "(unlabelled) or in one subfolder per class (root/<class>/<image>)."
        )
        if not root.is_dir():
            raise DatasetFilesMissing("dataset.root", f"no folder {root}. {how}")
        loose = _images_in(root)
        class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and _images_in(d))
        if class_dirs and loose:
            raise ConfigError(
                "dataset.root",
                f"{root} has class subfolders ({', '.join(d.name for d in class_dirs)}) and "
                f"also {len(loose)} image(s) directly in it (e.g. {loose[0].name}), whose "
                "class is unknown: move them into a class folder or elsewhere",
            )
        if class_dirs:
            self.classes: tuple[str, ...] | None = tuple(d.name for d in class_dirs)
            files = [(p, i) for i, d in enumerate(class_dirs) for p in _images_in(d)]
        elif loose:
            self.classes = None
            files = [(p, -1) for p in loose]
        else:
            raise DatasetFilesMissing("dataset.root", f"no images in {root}. {how}")
        mode = "L" if s.grayscale else "RGB"
        arrays = [_load(p, mode, s.size) for p, _ in files]
        first = arrays[0].shape
        for (path, _), array in zip(files, arrays, strict=True):
            if array.shape != first:
                raise ConfigError(
                    "dataset.size",
                    f"{path} is {array.shape[1]}×{array.shape[0]} but {files[0][0]} is "
                    f"{first[1]}×{first[0]}: set 'size' to resize every image to one square",
                )
        import numpy as np  # only now: a missing folder is refused without them
        import torch

        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(torch.float32)
        self.root = root
        self.files = [p for p, _ in files]
        self.images = (pixels / 127.5 - 1.0).contiguous()
        self.labels = (
            torch.tensor([i for _, i in files], dtype=torch.int64) if self.classes else None
        )
        self.heldout_images = None
        self.heldout_labels = None
        self.shape = tuple(self.images.shape[1:])
        self.centers = None
        self.std = None

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        from pipeline_plugins.datasets.mixture import sample_rows

        return sample_rows(self.images, n, generator)


@hookimpl
def register_datasets(register):
    register(ImageFolder)
