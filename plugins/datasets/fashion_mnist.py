"""fashion_mnist: Zalando's article images from a local folder of IDX files (never downloaded).

Xiao, Rasul & Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset for Benchmarking
Machine Learning Algorithms" (arXiv:1708.07747; zalandoresearch/fashion-mnist): a drop-in
replacement for MNIST with the same file names and format, 60,000 training and 10,000
test 28×28 greyscale images in 10 classes (names as in the paper and its README). Files are
read from the ``root`` setting, else ``$GAN_PIPELINE_FASHION_MNIST_DIR``, else
``~/data/fashion_mnist``; scaling, shapes and the held-out split are those of ``mnist``.
"""

from __future__ import annotations

from pipeline import hookimpl
from pipeline_plugins.datasets.idx import IdxFolderDataset


class FashionMNIST(IdxFolderDataset):
    name = "fashion_mnist"
    description = (
        "Fashion-MNIST from local IDX files (root / $GAN_PIPELINE_FASHION_MNIST_DIR), (1, 28, 28)"
    )
    env_var = "GAN_PIPELINE_FASHION_MNIST_DIR"
    default_root = "~/data/fashion_mnist"
    dataset_title = "Fashion-MNIST"
    classes = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )


@hookimpl
def register_datasets(register):
    register(FashionMNIST)
