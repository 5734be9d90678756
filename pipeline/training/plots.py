"""Plots for evaluation artifacts: 2-D sample scatters, image grids and loss curves.

Only matplotlib's object API is used (``Figure`` + ``savefig``), never pyplot: plots are
made from worker threads while tuning, and pyplot's global state is not thread-safe.
Every function creates the parent folders of ``path`` and returns it as a ``Path``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Circle

#: resolution of every saved PNG
DPI = 100
#: share of the samples the scatter view must show when no reference extent exists
_SAMPLE_QUANTILES = (0.01, 0.99)


def _prepare(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _as_points(array: np.ndarray, what: str) -> np.ndarray:
    points = np.asarray(array, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{what} must have shape (n, 2), got {points.shape}")
    return points


def _scatter_limits(
    samples: np.ndarray, reference: np.ndarray | None, std: float | None
) -> tuple[tuple[float, float], tuple[float, float]]:
    """A square view: the reference extent (centres/real) if any, else most samples.

    With a reference, the view grows to take in the central 98 % of the samples, but by at
    most one reference span on each side, so a handful of exploded samples cannot shrink
    the picture to a dot.
    """
    finite = samples[np.isfinite(samples).all(axis=1)]
    if finite.size:
        s_lo, s_hi = np.quantile(finite, _SAMPLE_QUANTILES, axis=0)
    else:
        s_lo = s_hi = None
    if reference is not None and reference.size:
        lo, hi = reference.min(axis=0), reference.max(axis=0)
        if std is not None:
            lo, hi = lo - 3 * std, hi + 3 * std
        span = np.maximum(hi - lo, 1e-6).max()
        if s_lo is not None:
            lo = np.maximum(np.minimum(lo, s_lo), lo - span)
            hi = np.minimum(np.maximum(hi, s_hi), hi + span)
    elif s_lo is not None:
        lo, hi = s_lo, s_hi
    else:
        lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    middle = (lo + hi) / 2
    half = max(float((hi - lo).max()) / 2, 1e-3) * 1.1  # 10 % margin
    return (middle[0] - half, middle[0] + half), (middle[1] - half, middle[1] + half)


def scatter_plot(
    samples: np.ndarray,
    path: str | Path,
    *,
    centers: np.ndarray | None = None,
    std: float | None = None,
    real: np.ndarray | None = None,
    title: str = "",
) -> Path:
    """Scatter 2-D generator samples over the real data and the mode centres.

    Generator samples are small translucent blue dots over the ``real`` samples, if given,
    as larger orange dots (seen through the samples, bright where a mode is missed);
    ``centers`` small black crosses, each with its 3σ high-quality circle when ``std`` is given (the
    VEEGAN/PacGAN threshold), drawn above the samples. The view is square with equal
    aspect and covers the centres/real data and most samples; samples outside it
    (outliers, NaN/inf) are counted in a note in the corner rather than allowed to shrink
    the picture.
    """
    path = _prepare(path)
    points = _as_points(samples, "samples")
    reals = _as_points(real, "real") if real is not None else None
    modes = _as_points(centers, "centers") if centers is not None else None
    reference = [a for a in (modes, reals) if a is not None]
    ref = np.concatenate(reference) if reference else None
    (x0, x1), (y0, y1) = _scatter_limits(points, ref, std)

    # a fixed square 4.1-inch axes with room for tick labels, title and the legend below
    # (fixed margins: tight_layout would cost more than the drawing itself)
    width, height = 5.0, 5.4
    fig = Figure(figsize=(width, height), dpi=DPI)
    ax = fig.add_axes((0.6 / width, 0.8 / height, 4.1 / width, 4.1 / height))
    if reals is not None:
        ax.plot(
            reals[:, 0], reals[:, 1], "o", ms=3, mew=0, color="tab:orange", alpha=0.9,
            label=f"real ({len(reals)})", zorder=1,
        )  # fmt: skip
    shown = points[np.isfinite(points).all(axis=1)]
    ax.plot(
        shown[:, 0],
        shown[:, 1],
        ".",
        ms=2,
        color="tab:blue",
        alpha=0.35,
        label=f"generated ({len(points)})",
        zorder=2,
    )
    if modes is not None:
        if std is not None:
            circles = [Circle((float(x), float(y)), 3 * std) for x, y in modes]
            ax.add_collection(
                PatchCollection(
                    circles, facecolor="none", edgecolor="black", linewidth=1.0, zorder=3
                )
            )
        ax.plot(
            modes[:, 0],
            modes[:, 1],
            "+",
            ms=3,
            mew=0.8,
            color="black",
            label="mode centre" + (" · 3σ circle" if std is not None else ""),
            zorder=4,
        )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")
    inside = (
        np.isfinite(points).all(axis=1)
        & (points[:, 0] >= x0)
        & (points[:, 0] <= x1)
        & (points[:, 1] >= y0)
        & (points[:, 1] <= y1)
    )
    outside = int((~inside).sum())
    if outside:
        ax.text(
            0.01,
            0.01,
            f"{outside} of {len(points)} samples outside the view",
            transform=ax.transAxes,
            fontsize=8,
            color="darkred",
            va="bottom",
            ha="left",
        )
    legend = ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.05), ncol=3, fontsize=8, frameon=False
    )
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
        if handle.get_marker() in (".", "o"):
            handle.set_markersize(6)
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=DPI)
    return path


def image_grid(images: np.ndarray, path: str | Path, *, nrow: int = 8, title: str = "") -> Path:
    """Tile images ``(n, c, h, w)`` in [-1, 1] into one picture, ``nrow`` per row.

    ``c`` = 1 is drawn in grey, ``c`` = 3 in RGB; values are clipped to [-1, 1]. Images
    are separated by a one-pixel mid-grey line; no axes are drawn.
    """
    path = _prepare(path)
    grid = _tile(images, nrow)
    c = grid.shape[2]

    gh, gw = grid.shape[:2]
    width = 6.0
    title_h = 0.4 if title else 0.0
    height = width * gh / gw
    fig = Figure(figsize=(width, height + title_h), dpi=DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + title_h)))
    if c == 1:
        ax.imshow(grid[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.text(0.5, 1 - title_h / 2 / (height + title_h), title, ha="center", va="center")
    fig.savefig(path, dpi=DPI)
    return path


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def loss_curves(
    history: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *, title: str = ""
) -> Path:
    """Plot logged metrics against the generator step, one panel per group.

    Metrics are grouped by the prefix before "/" (``loss/critic`` and ``loss/generator``
    share a panel; a name without "/" such as ``wasserstein_estimate`` is its own group).
    Each metric is drawn raw (thin, faint) with a centred moving average over about 2 % of
    its points on top; a metric of fewer than 20 points is drawn with markers (one point
    makes no line). Non-finite values are left out. The panels share the x axis.
    """
    path = _prepare(path)
    groups: dict[str, list[str]] = {}
    for name in history:
        groups.setdefault(name.split("/", 1)[0], []).append(name)

    n_panels = max(len(groups), 1)
    # fixed margins in inches (tight_layout would cost more than the drawing itself)
    top, bottom, panel, gap = (0.5 if title else 0.2), 0.55, 1.8, 0.25
    height = top + bottom + n_panels * panel + (n_panels - 1) * gap
    fig = Figure(figsize=(8, height), dpi=DPI)
    fig.subplots_adjust(
        left=0.1, right=0.98, top=1 - top / height, bottom=bottom / height, hspace=gap / panel
    )
    axes = fig.subplots(n_panels, 1, sharex=True, squeeze=False)[:, 0]
    if not groups:
        axes[0].text(0.5, 0.5, "no metrics logged", ha="center", va="center")
    for ax, (group, names) in zip(axes, groups.items(), strict=False):
        for i, name in enumerate(names):
            steps, values = (np.asarray(a, dtype=np.float64).ravel() for a in history[name])
            if steps.shape != values.shape:
                raise ValueError(
                    f"{name}: steps and values differ in length ({len(steps)} vs {len(values)})"
                )
            keep = np.isfinite(steps) & np.isfinite(values)
            steps, values = steps[keep], values[keep]
            color = f"C{i % 10}"
            ax.plot(steps, values, color=color, linewidth=0.6, alpha=0.3)
            window = max(1, len(values) // 50)
            if window > 1:
                smooth = _moving_average(values, window)
                offset = (window - 1) // 2
                ax.plot(steps[offset : offset + len(smooth)], smooth, color=color, label=name)
            else:  # few points: markers too, so that a single value is seen
                marker = "o" if len(values) < 20 else None
                ax.plot(steps, values, color=color, linewidth=1.0, marker=marker, label=name)
        ax.set_ylabel(group)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize=7)
    axes[-1].set_xlabel("generator step")
    if title:
        fig.suptitle(title, y=1 - top / 2 / height, va="center")
    fig.savefig(path, dpi=DPI)
    return path


def animate_grids(
    frames: list[np.ndarray],
    path: str | Path,
    *,
    labels: list[str] | None = None,
    nrow: int = 8,
    scale: int | None = None,
    duration_ms: int = 500,
) -> Path:
    """Write an animated GIF of the evaluation grids: one frame per evaluation.

    Each frame is a batch of images ``(n, c, h, w)`` in [-1, 1] (``c`` = 1 grey, 3 RGB;
    ``(n, h, w)`` is read as one channel), tiled ``nrow`` per row with a one-pixel
    mid-grey separator like :func:`image_grid`, and enlarged ``scale`` times by pixel
    repetition (default: so the grid is about 400 pixels wide). ``labels``, one per frame
    (e.g. ``"step 500"``), are written in a strip above the grid. Frames are shown
    ``duration_ms`` each and the animation loops forever; Pillow merges consecutive
    identical frames into one longer frame. Drawn with Pillow, not matplotlib (a frame
    costs a few milliseconds). Returns ``path``.
    """
    from PIL import Image, ImageDraw

    if not frames:
        raise ValueError("animate_grids needs at least one frame")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"{len(labels)} labels for {len(frames)} frames")
    if duration_ms < 1:
        raise ValueError(f"duration_ms must be ≥ 1, got {duration_ms}")
    path = _prepare(path)
    grids = [_tile(frame, nrow) for frame in frames]
    shapes = {g.shape for g in grids}
    if len(shapes) != 1:
        raise ValueError(f"all frames must tile to one size, got {sorted(shapes)}")
    gh, gw, c = grids[0].shape
    if scale is None:
        scale = max(1, 400 // gw)
    if scale < 1:
        raise ValueError(f"scale must be ≥ 1, got {scale}")
    strip = 14 if labels is not None else 0
    images = []
    for i, grid in enumerate(grids):
        pixels = np.round(grid * 255).astype(np.uint8).repeat(scale, 0).repeat(scale, 1)
        canvas = np.zeros((gh * scale + strip, gw * scale, c), dtype=np.uint8)
        canvas[strip:] = pixels
        image = Image.fromarray(canvas[:, :, 0] if c == 1 else canvas, "L" if c == 1 else "RGB")
        if labels is not None:
            ImageDraw.Draw(image).text((2, 1), labels[i], fill=255 if c == 1 else (255,) * 3)
        images.append(image if c == 1 else image.quantize(colors=256))
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=duration_ms,
        loop=0,
    )
    return path


def _tile(images: np.ndarray, nrow: int) -> np.ndarray:
    """Images ``(n, c, h, w)`` in [-1, 1] → one grid ``(H, W, c)`` in [0, 1]."""
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1] not in (1, 3) or len(array) == 0:
        raise ValueError(f"images must have shape (n, 1 or 3, h, w) with n ≥ 1, got {array.shape}")
    if nrow < 1:
        raise ValueError(f"nrow must be ≥ 1, got {nrow}")
    n, c, h, w = array.shape
    pixels = (np.clip(np.nan_to_num(array, nan=-1.0), -1.0, 1.0) + 1.0) / 2.0
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 0.5)
    for i in range(n):
        r, q = divmod(i, cols)
        top, left = 1 + r * (h + 1), 1 + q * (w + 1)
        grid[top : top + h, left : left + w] = pixels[i].transpose(1, 2, 0)
    return grid
