"""Plots: each function writes a PNG that matplotlib reads back (real matplotlib, no mocks)."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from pipeline.training.plots import image_grid, loss_curves, scatter_plot


def _ring(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    angles = 2 * np.pi * np.arange(8) / 8
    centers = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    std = 0.01
    points = centers[rng.integers(0, 8, n)] + std * rng.standard_normal((n, 2))
    return points, centers, std


def _read(path) -> np.ndarray:
    assert path.exists() and path.stat().st_size > 0
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    return image[:, :, :3]


def _red_pixels(rgb: np.ndarray) -> int:
    return int(((rgb[:, :, 0] > 0.8) & (rgb[:, :, 1] < 0.3) & (rgb[:, :, 2] < 0.3)).sum())


def _orange_pixels(rgb: np.ndarray) -> int:  # matplotlib's tab:orange, (1.0, 0.5, 0.05)
    r, g, b = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
    return int(((r > 0.9) & (g > 0.35) & (g < 0.65) & (b < 0.3)).sum())


def _dark_pixels(rgb: np.ndarray) -> int:
    return int((rgb.max(axis=2) < 0.25).sum())


def test_scatter_plot_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    samples, centers, std = _ring(2500, rng)
    real, _, _ = _ring(2500, rng)
    out = scatter_plot(
        samples,
        tmp_path / "nested" / "dir" / "scatter.png",
        centers=centers,
        std=std,
        real=real,
        title="ring",
    )
    assert out == tmp_path / "nested" / "dir" / "scatter.png"
    rgb = _read(out)
    assert abs(rgb.shape[0] - rgb.shape[1]) < 0.1 * rgb.shape[1]  # near-square figure
    assert rgb.std() > 0
    plain = _read(scatter_plot(samples, tmp_path / "plain.png", real=real, title="ring"))
    assert _dark_pixels(rgb) > _dark_pixels(plain) + 200  # the 3σ circles and crosses are drawn


def test_scatter_real_points_show_where_the_samples_miss_a_mode(tmp_path):
    rng = np.random.default_rng(3)
    real, centers, std = _ring(2500, rng)
    samples = real[np.linalg.norm(real - centers[0], axis=1) > 0.5]  # mode 0 missed
    rgb = _read(scatter_plot(samples, tmp_path / "missed.png", centers=centers, std=std, real=real))
    without = _read(scatter_plot(samples, tmp_path / "alone.png", centers=centers, std=std))
    assert _orange_pixels(without) == 0
    assert _orange_pixels(rgb) > 30  # the missed mode's real points, in orange


def test_a_sample_title_carries_the_metrics_by_hand():
    from pipeline.training.trial_record import metrics_line, sample_title

    metrics = {"w1": 0.01234, "reverse_kl": 0.0077123, "hq_fraction": 0.8764, "modes": 25.0}
    assert metrics_line(metrics) == "25 modes · 87.6 % HQ · rKL 0.0077 · W1 0.0123"
    assert sample_title("grid", 5000, metrics) == (
        "grid · step 5000\n25 modes · 87.6 % HQ · rKL 0.0077 · W1 0.0123"
    )
    assert sample_title("grid", 5000) == "grid · step 5000"
    assert metrics_line({"fd": 12.345, "precision": 0.5}) == "fd 12.3 · precision 0.5"


def test_scatter_plot_without_extras(tmp_path):
    samples = np.random.default_rng(1).standard_normal((100, 2))
    rgb = _read(scatter_plot(samples, str(tmp_path / "plain.png")))
    assert rgb.std() > 0
    assert _red_pixels(rgb) == 0  # no centres, no red


def test_scatter_plot_survives_huge_outlier(tmp_path):
    rng = np.random.default_rng(2)
    samples, centers, std = _ring(2500, rng)
    samples[0] = [1e6, -1e6]
    samples[1] = [np.nan, np.inf]
    path = scatter_plot(samples, tmp_path / "outlier.png", centers=centers, std=std)
    rgb = _read(path)
    # the ring is still drawn large: blue sample dots cover a visible area, not one pixel
    blue = (rgb[:, :, 2] > 0.6) & (rgb[:, :, 0] < 0.5)
    rows, cols = np.nonzero(blue)
    assert rows.max() - rows.min() > rgb.shape[0] // 3
    assert cols.max() - cols.min() > rgb.shape[1] // 3


def test_scatter_plot_outlier_without_reference(tmp_path):
    samples = np.random.default_rng(3).standard_normal((2500, 2))
    samples[:3] = 1e6
    rgb = _read(scatter_plot(samples, tmp_path / "noref.png"))
    blue = (rgb[:, :, 2] > 0.6) & (rgb[:, :, 0] < 0.5)
    rows, _ = np.nonzero(blue)
    assert rows.max() - rows.min() > rgb.shape[0] // 3


def test_scatter_plot_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        scatter_plot(np.zeros((10, 3)), tmp_path / "bad.png")


def test_image_grid_digits(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits().images[:16].astype(np.float64)  # (16, 8, 8), values 0..16
    images = (digits / 8.0 - 1.0)[:, None]  # (16, 1, 8, 8) in [-1, 1]
    rgb = _read(image_grid(images, tmp_path / "grid" / "digits.png", nrow=8))
    assert rgb.std() > 0
    # grey picture: the channels agree
    np.testing.assert_allclose(rgb[:, :, 0], rgb[:, :, 1], atol=1e-6)
    # 8 per row, 2 rows: the picture is wider than tall
    assert rgb.shape[1] > rgb.shape[0]


def test_image_grid_rgb_and_title(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.uniform(-1, 1, size=(10, 3, 32, 32))
    images[:, 0] = 1.0  # strong red channel
    images[:, 1:] = -1.0
    rgb = _read(image_grid(images, tmp_path / "rgb.png", nrow=4, title="samples"))
    assert _red_pixels(rgb) > 1000


def test_image_grid_rejects_bad_channels(tmp_path):
    with pytest.raises(ValueError):
        image_grid(np.zeros((4, 2, 8, 8)), tmp_path / "bad.png")


def test_loss_curves(tmp_path):
    rng = np.random.default_rng(5)
    steps = np.arange(2500)
    history = {
        "loss/critic": (steps, -1.0 + 0.1 * rng.standard_normal(2500)),
        "loss/generator": (steps, 1.0 + 0.1 * rng.standard_normal(2500)),
        "wasserstein_estimate": (steps, np.exp(-steps / 500) + 0.05 * rng.standard_normal(2500)),
        "penalty": (steps[::10], rng.uniform(size=250)),
        "sigma/layer0": (steps[::50], np.linspace(1, 2, 50)),
        "grad_norm/critic": (steps, np.abs(rng.standard_normal(2500))),
    }
    history["penalty"][1][3] = np.nan  # non-finite values are skipped, not fatal
    one = _read(loss_curves({"loss/critic": history["loss/critic"]}, tmp_path / "one.png"))
    many = _read(loss_curves(history, tmp_path / "curves" / "all.png", title="run"))
    assert many.std() > 0
    # five groups (loss, wasserstein_estimate, penalty, sigma, grad_norm) → a taller picture
    assert many.shape[0] > 2 * one.shape[0]
    assert many.shape[1] == one.shape[1]


def test_loss_curves_short_and_empty(tmp_path):
    short = {"loss/critic": (np.array([0, 1]), np.array([0.5, 0.4]))}
    assert _read(loss_curves(short, tmp_path / "short.png")).std() > 0
    assert _read(loss_curves({}, tmp_path / "empty.png")).std() > 0


def test_a_metric_of_one_point_is_seen(tmp_path):
    """grad_norm logged once in a short run: a line of one point draws nothing, a marker
    does. Coloured pixels (the series' colour, whatever the colour cycle) appear left of
    the legend, where the axes, grid and text are grey."""
    single = {"grad_norm/critic": (np.array([20]), np.array([0.27]))}
    image = _read(loss_curves(single, tmp_path / "single.png"))
    image = image / (255.0 if image.max() > 1.0 else 1.0)
    coloured = (image.max(axis=-1) - image.min(axis=-1)) > 0.15
    assert coloured[:, : 2 * coloured.shape[1] // 3].sum() > 3
