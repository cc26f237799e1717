"""The analysis figures: matplotlib drawings saved as PNG files of a stated pixel size.

Each function draws one kind of figure on its own :class:`~matplotlib.figure.Figure` (no
pyplot, so no global state and no display backend) and returns a :class:`FigureFile` whose
``width``/``height`` are the PNG's exact pixel size: figures are laid out in pixels at
:data:`DPI` and saved without tight cropping. numpy + matplotlib only (no torch).
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from dlcv.runtime.atomic import atomic_path
from dlcv.runtime.errors import MissingDependencyError

DPI = 100
TILE = 200  # pixels per image tile in the grids
PAD = 8
TITLE_H = 36  # the figure title's band
CELL_TITLE_H = 34  # two lines of text above each tile
MAX_LEGEND_CLASSES = 20  # more classes than this: no legend (colours alone cannot be told apart)


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(
            "dlcv-analyze draws its figures with matplotlib, which is not installed; pip install matplotlib "
            "(or pip install 'dlcv[train]')"
        ) from None
    return Figure, FigureCanvasAgg


@dataclass(frozen=True)
class FigureFile:
    """A written PNG: where, its pixel size, a one-line caption, and the numbers it shows (when it
    draws a matrix, so a test or a reader can check them)."""

    path: Path
    width: int
    height: int
    caption: str
    values: np.ndarray | None = field(default=None, compare=False, repr=False)


def new_figure(width: int, height: int):
    """A figure of exactly ``width``×``height`` pixels."""
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path, caption: str, values: np.ndarray | None = None) -> FigureFile:
    """Write ``fig`` as a PNG atomically; returns what was written."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    width, height = fig.canvas.get_width_height()
    return FigureFile(Path(path), int(width), int(height), caption, values)


def _axes_px(fig, left: float, top: float, width: float, height: float):
    """Axes placed in pixels from the figure's top-left corner."""
    fw, fh = fig.canvas.get_width_height()
    return fig.add_axes((left / fw, 1 - (top + height) / fh, width / fw, height / fh))


def _title(fig, text: str) -> None:
    """The figure's title at the top, wrapped to the figure's width (about 7 pixels a character)."""
    width, height = fig.canvas.get_width_height()
    wrapped = textwrap.shorten(text, width=2 * max(20, width // 7), placeholder="…")
    fig.suptitle("\n".join(textwrap.wrap(wrapped, max(20, width // 7))[:2]), y=1 - 6 / height, va="top", fontsize=11)


def short_name(name: str, limit: int = 18) -> str:
    """A class name cut to ``limit`` characters for tick labels."""
    name = str(name)
    return name if len(name) <= limit else name[: limit - 1] + "…"


def class_colours(num_classes: int) -> np.ndarray:
    """num_classes×4 RGBA colours for scatter plots (tab10/tab20, else evenly spaced hues)."""
    from matplotlib import colormaps

    if num_classes <= 10:
        return colormaps["tab10"](np.arange(num_classes))
    if num_classes <= 20:
        return colormaps["tab20"](np.arange(num_classes))
    return colormaps["hsv"](np.linspace(0, 1, num_classes, endpoint=False))


# --------------------------------------------------------------------------- confusion matrix


def heatmap_size(num_classes: int) -> tuple[int, int]:
    """(width, height) in pixels of :func:`confusion_heatmap` for ``num_classes`` classes."""
    cell = 40 if num_classes <= 20 else max(8, 1400 // num_classes)
    side = max(240, cell * num_classes)
    return side + 290, side + 200


def confusion_heatmap(normalised: np.ndarray, class_names: Sequence[str], path: Path, title: str) -> FigureFile:
    """A row-normalised confusion matrix (rows: ground truth, columns: prediction; NaN rows, classes
    that never occur, drawn grey). Cells are annotated with their share up to 20 classes."""
    n = len(class_names)
    if normalised.shape != (n, n):
        raise ValueError(f"matrix of shape {normalised.shape} for {n} class names")
    width, height = heatmap_size(n)
    side = width - 290
    fig = new_figure(width, height)
    _title(fig, title)
    ax = _axes_px(fig, 170, 56, side, side)
    masked = np.ma.masked_invalid(normalised)
    from matplotlib import colormaps

    cmap = colormaps["Blues"].with_extremes(bad="#d0d0d0")
    image = ax.imshow(masked, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ticks = np.arange(n)
    fontsize = 9 if n <= 20 else max(4, int(420 / n))
    labels = [short_name(c) for c in class_names]
    ax.set_xticks(ticks, labels=labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, labels=labels, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                v = normalised[i, j]
                if np.isfinite(v) and v >= 0.005:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
    cax = _axes_px(fig, 170 + side + 16, 56, 14, side)
    fig.colorbar(image, cax=cax, label="share of the ground-truth row")
    return save_figure(fig, path, title, values=np.array(normalised, dtype=np.float64))


# --------------------------------------------------------------------------- per-class bars


def bars_size(num_classes: int) -> tuple[int, int]:
    """(width, height) in pixels of :func:`class_bars`."""
    return min(2400, max(640, 140 + 32 * num_classes)), 460


def class_bars(values: Sequence[float | None], class_names: Sequence[str], path: Path, title: str, ylabel: str) -> FigureFile:
    """One bar per class (None/NaN: no bar, marked "n/a"), with the mean over the defined values."""
    n = len(class_names)
    vals = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    if vals.shape != (n,):
        raise ValueError(f"{vals.size} values for {n} class names")
    width, height = bars_size(n)
    fig = new_figure(width, height)
    ax = _axes_px(fig, 70, 30, width - 90, height - 160)
    x = np.arange(n)
    ax.bar(x, np.nan_to_num(vals, nan=0.0), color="#4878d0")
    for i in np.flatnonzero(np.isnan(vals)):
        ax.text(i, 0.01, "n/a", ha="center", va="bottom", fontsize=7, rotation=90, color="#888888")
    if np.any(np.isfinite(vals)):
        mean = float(np.nanmean(vals))
        ax.axhline(mean, color="#d65f5f", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xticks(x, labels=[short_name(c) for c in class_names], rotation=90, fontsize=8 if n <= 40 else 6)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.shorten(title, width=max(30, width // 8), placeholder="…"), fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path, title, values=vals)


# --------------------------------------------------------------------------- embeddings


@dataclass(frozen=True)
class EmbeddingPanel:
    """One scatter: 2-D coordinates (N×2) and each point's class."""

    title: str
    coords: np.ndarray
    labels: np.ndarray


PANEL = 440


def embedding_size(panels: int, num_classes: int) -> tuple[int, int]:
    """(width, height) in pixels of :func:`embedding_panels`."""
    legend = 150 if num_classes <= MAX_LEGEND_CLASSES else 0
    return panels * PANEL + legend, PANEL + TITLE_H + 10


def embedding_panels(panels: Sequence[EmbeddingPanel], class_names: Sequence[str], path: Path, title: str) -> FigureFile:
    """Side-by-side 2-D scatters coloured by class, with one legend (up to 20 classes)."""
    if not panels:
        raise ValueError("no embedding to draw")
    n = len(class_names)
    width, height = embedding_size(len(panels), n)
    fig = new_figure(width, height)
    _title(fig, title)
    colours = class_colours(n)
    size = 12 if max(len(p.labels) for p in panels) <= 2000 else 4
    present = set()
    for k, panel in enumerate(panels):
        ax = _axes_px(fig, k * PANEL + 20, TITLE_H + 26, PANEL - 40, PANEL - 50)
        for c in range(n):
            sel = panel.labels == c
            if np.any(sel):
                ax.scatter(panel.coords[sel, 0], panel.coords[sel, 1], s=size, color=colours[c], linewidths=0, alpha=0.85)
                present.add(c)
        ax.set_title(textwrap.shorten(panel.title, width=PANEL // 7, placeholder="…"), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if n <= MAX_LEGEND_CLASSES and present:
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], marker="o", linestyle="", color=colours[c], label=short_name(class_names[c])) for c in sorted(present)
        ]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(len(panels) * PANEL / width, 0.5), fontsize=8,
                   markerscale=1.5, frameon=False)  # fmt: skip
    return save_figure(fig, path, title)


# --------------------------------------------------------------------------- training curves

CURVES_SIZE = (1320, 400)


def training_curves(
    epochs: np.ndarray,
    losses: dict[str, np.ndarray],
    metrics: dict[str, np.ndarray],
    lr: np.ndarray,
    path: Path,
    title: str,
    best_epoch: int | None = None,
) -> FigureFile:
    """Three panels over epochs: losses, validation metrics, learning rate (log scale)."""
    width, height = CURVES_SIZE
    fig = new_figure(width, height)
    _title(fig, title)
    panel_w = (width - 4 * 70) // 3
    panels = (("loss", losses, False), ("validation", metrics, False), ("learning rate", {"lr": lr}, True))
    for k, (name, series, log_scale) in enumerate(panels):
        ax = _axes_px(fig, 70 + k * (panel_w + 70), TITLE_H + 20, panel_w, height - TITLE_H - 80)
        for label, values in series.items():
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="#999999", linestyle=":", linewidth=1)
        positive = np.asarray(lr)[np.isfinite(lr)]
        if log_scale and positive.size and np.all(positive > 0) and positive.max() > 10 * positive.min():
            from matplotlib.ticker import NullFormatter

            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())
        elif log_scale:
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        if len(series) > 1 or name != "learning rate":
            ax.legend(fontsize=8)
    return save_figure(fig, path, title)


# --------------------------------------------------------------------------- image grids


def grid_size(rows: int, cols: int, legend_rows: int = 0) -> tuple[int, int]:
    """(width, height) in pixels of :func:`image_grid`."""
    width = cols * (TILE + PAD) + PAD
    height = TITLE_H + rows * (TILE + CELL_TITLE_H + PAD) + (22 * legend_rows + 12 if legend_rows else 0)
    return width, height


def legend_rows(num_classes: int) -> int:
    """Rows of the colour legend under a label-map grid (none above 20 classes)."""
    return 0 if num_classes > MAX_LEGEND_CLASSES else math.ceil(num_classes / 6)


def image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    cell_titles: Sequence[Sequence[str]],
    path: Path,
    title: str,
    legend: tuple[Sequence[str], np.ndarray] | None = None,
) -> FigureFile:
    """A grid of RGB uint8 tiles (each scaled into a square cell, aspect kept, nearest neighbour so
    label maps stay crisp), a title over each, and an optional class colour legend (names, palette)."""
    if not rows or not rows[0]:
        raise ValueError("no images to draw")
    cols = max(len(r) for r in rows)
    n_legend = legend_rows(len(legend[0])) if legend is not None else 0
    width, height = grid_size(len(rows), cols, n_legend)
    fig = new_figure(width, height)
    _title(fig, title)
    for r, (row, titles) in enumerate(zip(rows, cell_titles)):
        top = TITLE_H + r * (TILE + CELL_TITLE_H + PAD) + CELL_TITLE_H
        for c, tile in enumerate(row):
            ax = _axes_px(fig, PAD + c * (TILE + PAD), top, TILE, TILE)
            ax.imshow(tile, interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(titles[c] if c < len(titles) else "", fontsize=8)
    if n_legend:
        from matplotlib.patches import Patch

        names, palette = legend
        handles = [Patch(color=np.asarray(palette[i], dtype=np.float64) / 255.0, label=str(name)) for i, name in enumerate(names)]
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
    return save_figure(fig, path, title)


def probabilities_size(rows: int) -> tuple[int, int]:
    """(width, height) in pixels of :func:`probability_comparison`."""
    return TILE + 3 * PAD + 480, TITLE_H + rows * (TILE + CELL_TITLE_H + PAD)


def probability_comparison(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    reference: np.ndarray,
    deployed: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    title: str,
    reference_label: str = "PyTorch",
    deployed_label: str = "deployed",
    top: int = 5,
) -> FigureFile:
    """Per image: the picture, then grouped bars of two models' class probabilities (N×C each) over
    the classes either ranks in its top ``top``."""
    width, height = probabilities_size(len(images))
    fig = new_figure(width, height)
    _title(fig, title)
    for r, (image, text) in enumerate(zip(images, titles)):
        y0 = TITLE_H + r * (TILE + CELL_TITLE_H + PAD) + CELL_TITLE_H
        ax = _axes_px(fig, PAD, y0, TILE, TILE)
        ax.imshow(image, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(text, fontsize=8)
        order_ref = np.argsort(-reference[r], kind="stable")[:top]
        order_dep = np.argsort(-deployed[r], kind="stable")[:top]
        classes = list(dict.fromkeys([*order_ref.tolist(), *order_dep.tolist()]))
        bx = _axes_px(fig, TILE + 3 * PAD + 40, y0, 480 - 60, TILE - 50)
        x = np.arange(len(classes))
        bx.bar(x - 0.2, reference[r, classes], width=0.4, label=reference_label, color="#4878d0")
        bx.bar(x + 0.2, deployed[r, classes], width=0.4, label=deployed_label, color="#ee854a")
        bx.set_xticks(x, labels=[short_name(class_names[c]) for c in classes], rotation=45, fontsize=7, ha="right")
        bx.set_ylim(0, 1.0)
        bx.set_ylabel("probability", fontsize=8)
        bx.legend(fontsize=7)
    return save_figure(fig, path, title)
