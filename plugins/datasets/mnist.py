"""mnist: handwritten digits from a local folder of IDX files (never downloaded).

LeCun, Cortes & Burges, "THE MNIST DATABASE of handwritten digits" (yann.lecun.com/exdb/
mnist): 60,000 training and 10,000 test images of 28×28 pixels, classes 0–9. The files
are read as distributed (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
optionally ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``) from the
``root`` setting, else ``$GAN_PIPELINE_MNIST_DIR``, else ``~/data/mnist``. Pixels 0..255
are scaled to [-1, 1] as ``x/127.5 - 1``; one sample has shape ``(1, 28, 28)``.
``sample`` draws training images uniformly with replacement; the t10k set, when present,
is ``heldout_images``/``heldout_labels`` (the image metrics' classifier reports its
accuracy on it). The IDX reader is :mod:`pipeline_plugins.datasets.idx`.
"""

from __future__ import annotations

from pipeline import hookimpl
from pipeline_plugins.datasets.idx import IdxFolderDataset


class MNIST(IdxFolderDataset):
    name = "mnist"
    description = "MNIST from local IDX files (root / $GAN_PIPELINE_MNIST_DIR), (1, 28, 28)"
    env_var = "GAN_PIPELINE_MNIST_DIR"
    default_root = "~/data/mnist"
    dataset_title = "MNIST"
    classes = tuple(str(i) for i in range(10))


@hookimpl
def register_datasets(register):
    register(MNIST)
