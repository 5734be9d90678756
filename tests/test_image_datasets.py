"""Image datasets: IDX files (MNIST, Fashion-MNIST), image folders, the digits' held-out split."""

from __future__ import annotations

import gzip
import importlib
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from pipeline.cli.commands import main
from pipeline.errors import ConfigError
from pipeline.types import Dataset
from pipeline_plugins.datasets.digits import Digits
from pipeline_plugins.datasets.fashion_mnist import FashionMNIST
from pipeline_plugins.datasets.idx import DatasetFilesMissing, read_idx, write_idx
from pipeline_plugins.datasets.image_folder import ImageFolder
from pipeline_plugins.datasets.mnist import MNIST
from pipeline_plugins.metrics.labelled_images import has_labelled_images


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file written by hand from the format description (independent of write_idx)."""
    assert array.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.tobytes()


def make_mnist_folder(root, n_train=30, n_test=12, side=28, *, gz_train=True, seed=0):
    rng = np.random.default_rng(seed)
    data = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    data["train-images-idx3-ubyte"][0, 0, 0] = 0
    data["train-images-idx3-ubyte"][0, 0, 1] = 255
    root.mkdir(parents=True, exist_ok=True)
    for name, array in data.items():
        raw = idx_bytes(array)
        if gz_train and name.startswith("train"):
            (root / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / name).write_bytes(raw)
    return data


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST, ImageFolder], ids=lambda c: c.name)
def test_module_registers_its_class(cls):
    module = importlib.import_module(f"pipeline_plugins.datasets.{cls.name}")
    registered = []
    module.register_datasets(registered.append)
    assert registered == [cls]
    assert issubclass(cls, Dataset) and cls.description


def test_idx_round_trip_plain_and_gzip(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    (tmp_path / "plain").write_bytes(idx_bytes(images))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(idx_bytes(images)))
    for name in ("plain", "packed.gz"):
        back = read_idx(tmp_path / name)
        assert back.dtype == np.uint8 and back.shape == (5, 4, 3)
        assert np.array_equal(back, images)
    # write_idx produces exactly the hand-made bytes, and other element types survive
    assert write_idx(tmp_path / "w", images).read_bytes() == idx_bytes(images)
    assert gzip.decompress(write_idx(tmp_path / "w.gz", images).read_bytes()) == idx_bytes(images)
    ints = np.arange(-6, 6, dtype=np.int32).reshape(3, 4) * 100_000
    floats = np.linspace(-1, 1, 7, dtype=np.float32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "i", ints)), ints)
    assert np.array_equal(read_idx(write_idx(tmp_path / "f.gz", floats)), floats)
    # big-endian sizes: 300 = 0x0000012C
    assert (tmp_path / "i").read_bytes()[:12] == bytes([0, 0, 0x0C, 2, 0, 0, 0, 3, 0, 0, 0, 4])


def test_idx_refuses_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    raw = idx_bytes(np.zeros((4, 2, 2), dtype=np.uint8))
    (tmp_path / "short").write_bytes(raw[:-3])
    with pytest.raises(ValueError, match="needs 16"):
        read_idx(tmp_path / "short")


def test_mnist_reads_a_local_folder(tmp_path):
    data = make_mnist_folder(tmp_path / "mnist")
    ds = MNIST(MNIST.Settings(root=str(tmp_path / "mnist")))
    assert ds.shape == (1, 28, 28) and ds.is_image
    assert ds.images.shape == (30, 1, 28, 28) and ds.images.dtype == torch.float32
    expected = torch.from_numpy(data["train-images-idx3-ubyte"]).float() / 127.5 - 1
    assert torch.equal(ds.images[:, 0], expected)
    assert ds.images[0, 0, 0, 0] == -1 and ds.images[0, 0, 0, 1] == 1
    assert ds.labels.dtype == torch.int64
    assert ds.labels.tolist() == data["train-labels-idx1-ubyte"].tolist()
    assert ds.heldout_images.shape == (12, 1, 28, 28)
    assert ds.heldout_labels.tolist() == data["t10k-labels-idx1-ubyte"].tolist()
    x = ds.sample(64, gen(0))
    assert x.shape == (64, 1, 28, 28)
    assert torch.equal(x, ds.sample(64, gen(0)))
    assert has_labelled_images(ds)


def test_fashion_mnist_finds_its_folder_through_the_environment(tmp_path, monkeypatch):
    data = make_mnist_folder(tmp_path / "fm", gz_train=False, seed=3)
    (tmp_path / "fm" / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "fm" / "t10k-labels-idx1-ubyte").unlink()
    monkeypatch.setenv("GAN_PIPELINE_FASHION_MNIST_DIR", str(tmp_path / "fm"))
    ds = FashionMNIST()
    assert ds.root == tmp_path / "fm"
    assert ds.labels.tolist() == data["train-labels-idx1-ubyte"].tolist()
    assert ds.heldout_images is None and ds.heldout_labels is None
    assert len(ds.classes) == 10 and ds.classes[9] == "Ankle boot"


def test_missing_folder_and_files_say_what_to_put_where(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetFilesMissing) as info:
        MNIST(MNIST.Settings(root=str(missing)))
    message = str(info.value)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, FileNotFoundError)
    assert str(missing) in message
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "GAN_PIPELINE_MNIST_DIR",
    ):
        assert name in message
    # a folder with the images but not the labels names the missing file first
    folder = tmp_path / "half"
    make_mnist_folder(folder)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetFilesMissing, match=r"^dataset.root: train-labels-idx1-ubyte\[.gz\]"):
        MNIST(MNIST.Settings(root=str(folder)))
    # the default folder comes from the environment, else ~/data/mnist
    monkeypatch.setenv("GAN_PIPELINE_MNIST_DIR", str(missing))
    with pytest.raises(DatasetFilesMissing, match="nowhere"):
        MNIST()


def test_cli_reports_a_missing_mnist_folder_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "dataset: {name: mnist, root: " + str(tmp_path / "absent") + "}\n"
        "model: {name: dcgan}\nloss: {name: wgan}\nconstraint: {name: none}\n"
        "optimizer: {generator: {name: adam}, critic: {name: adam}}\n"
        "metrics: [w1]\n"
    )
    result = CliRunner().invoke(main, ["train", str(exp)])
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1
    assert "train-images-idx3-ubyte" in result.output and str(tmp_path / "absent") in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]  # no run, no store


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_with_class_subfolders(tmp_path):
    # 3 "dark" and 2 "light" images of 12×10 pixels, centre-cropped to 10×10, resized to 8×8
    for i in range(3):
        write_png(tmp_path / "dark" / f"{i}.png", np.full((10, 12), 0, dtype=np.uint8))
    for i in range(2):
        write_png(tmp_path / "light" / f"{i}.PNG", np.full((10, 12), 255, dtype=np.uint8))
    (tmp_path / "light" / "notes.txt").write_text("not an image")
    ds = ImageFolder(ImageFolder.Settings(root=str(tmp_path), size=8))
    assert ds.shape == (1, 8, 8) and ds.is_image
    assert ds.classes == ("dark", "light")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert torch.equal(ds.images[:3], torch.full((3, 1, 8, 8), -1.0))
    assert torch.equal(ds.images[3:], torch.full((2, 1, 8, 8), 1.0))
    assert ds.heldout_images is None
    assert has_labelled_images(ds)
    x = ds.sample(16, gen(2))
    assert x.shape == (16, 1, 8, 8) and torch.equal(x, ds.sample(16, gen(2)))
    rgb = ImageFolder(ImageFolder.Settings(root=str(tmp_path), size=16, grayscale=False))
    assert rgb.shape == (3, 16, 16)


def test_image_folder_without_classes_and_its_errors(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    write_png(tmp_path / "flat" / "a.png", pixels)
    write_png(tmp_path / "flat" / "b.png", pixels[::-1].copy())
    ds = ImageFolder(ImageFolder.Settings(root=str(tmp_path / "flat"), grayscale=False))
    assert ds.shape == (3, 6, 5)
    assert torch.equal(ds.images[0], torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1)
    assert ds.labels is None and ds.classes is None
    assert not has_labelled_images(ds)
    # sizes differ and no 'size': the error names the setting and both files
    write_png(tmp_path / "flat" / "c.png", np.zeros((7, 7), dtype=np.uint8))
    with pytest.raises(ConfigError, match=r"dataset.size: .*c.png is 7×7"):
        ImageFolder(ImageFolder.Settings(root=str(tmp_path / "flat")))
    # loose images beside class folders have no class
    write_png(tmp_path / "flat" / "cls" / "d.png", np.zeros((6, 5), dtype=np.uint8))
    with pytest.raises(ConfigError, match="class is unknown"):
        ImageFolder(ImageFolder.Settings(root=str(tmp_path / "flat"), size=8))
    with pytest.raises(DatasetFilesMissing, match="no images in"):
        (tmp_path / "empty").mkdir()
        ImageFolder(ImageFolder.Settings(root=str(tmp_path / "empty")))
    with pytest.raises(DatasetFilesMissing, match="no folder"):
        ImageFolder(ImageFolder.Settings(root=str(tmp_path / "absent")))


def test_digits_heldout_split_is_fixed_disjoint_and_covers_every_class():
    ds, again = Digits(), Digits()
    assert ds.images.shape == (1797, 1, 8, 8)  # sampling still uses every image
    assert ds.train_images.shape == (1438, 1, 8, 8) and ds.heldout_images.shape == (359, 1, 8, 8)
    assert torch.equal(ds.heldout_images, again.heldout_images)
    rows = {tuple(r) for r in ds.images.reshape(1797, -1).tolist()}
    train = [tuple(r) for r in ds.train_images.reshape(1438, -1).tolist()]
    held = [tuple(r) for r in ds.heldout_images.reshape(359, -1).tolist()]
    assert set(train) | set(held) <= rows
    # every image is in exactly one part: the parts rebuild the data set's multiset
    joined = torch.cat([ds.train_images, ds.heldout_images]).reshape(1797, -1)
    assert sorted(map(tuple, joined.tolist())) == sorted(
        map(tuple, ds.images.reshape(1797, -1).tolist())
    )
    assert set(ds.train_labels.tolist()) == set(ds.heldout_labels.tolist()) == set(range(10))
    assert torch.bincount(ds.heldout_labels).min() >= 25  # about 36 per class
