"""Figures: reconstruction CDFs and image grids. Matplotlib with the Agg backend (no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxrecon.metrics import empirical_cdf  # noqa: E402


def cdf_axes(ax, cosines: Mapping[str, np.ndarray], *, title: str = "", fontsize: int = 8) -> None:
    """One panel: the empirical CDF of the cosine similarity per attack, labelled with its median
    (lower curve = stronger attack)."""
    for name, values in cosines.items():
        xs, ys = empirical_cdf(np.asarray(values))
        ax.step(
            np.concatenate([[xs[0]], xs]),
            np.concatenate([[0.0], ys]),
            where="post",
            label=f"{name} (median {np.median(values):.3f})",
        )
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=fontsize - 1)
    ax.set_title(title, fontsize=fontsize + 1)


def cdf_plot(cosines: Mapping[str, np.ndarray], path: str, *, title: str = "") -> None:
    """Empirical CDF of the cosine similarity per attack (lower curve = stronger attack)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    cdf_axes(ax, cosines, title=title or "Reconstruction CDF (lower curve = stronger attack)")
    ax.set_xlabel("cosine similarity to the deleted record")
    ax.set_ylabel("fraction of deletions")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cdf_grid(
    panels: Sequence[Sequence[tuple[str, Mapping[str, np.ndarray]]]],
    path: str,
    *,
    xlabel: str = "cosine similarity to the deleted record",
) -> None:
    """A grid of `cdf_axes` panels: `panels[row][col]` = (title, {attack: cosines}); each x axis
    ends at 1 and starts at 0 (or the lowest value), so panels compare at a glance."""
    rows, cols = len(panels), max(len(row) for row in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.5 * rows), squeeze=False)
    for i, row in enumerate(panels):
        for j in range(cols):
            if j < len(row):
                cdf_axes(axes[i, j], row[j][1], title=row[j][0], fontsize=7)
                axes[i, j].set_xlim(min(0.0, axes[i, j].get_xlim()[0]), 1.0)
            else:
                axes[i, j].axis("off")
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def reconstruction_grid(
    rows: Sequence[tuple[str, np.ndarray]],
    image_shape: tuple[int, ...],
    path: str,
    *,
    column_titles: Sequence[str] = (),
    value_range: tuple[float, float] = (0.0, 1.0),
) -> None:
    """A grid of images: one row per (label, [C, d] images), one column per shown sample.

    Reconstructions are clipped to `value_range` for display only.
    """
    num_cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(
        len(rows), num_cols, figsize=(1.1 * num_cols + 0.9, 1.2 * len(rows)), squeeze=False
    )
    cmap = "gray" if len(image_shape) == 2 or image_shape[-1] == 1 else None
    for r, (label, images) in enumerate(rows):
        for c in range(num_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                img = np.clip(np.asarray(images[c]), *value_range).reshape(image_shape)
                img = (img - value_range[0]) / (value_range[1] - value_range[0])
                ax.imshow(img.squeeze(), cmap=cmap, vmin=0, vmax=1)
            if r == 0 and c < len(column_titles):
                ax.set_title(column_titles[c], fontsize=8)
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
