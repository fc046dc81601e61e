"""The pooled data-set record shared by the data registry (`data`) and the readers (`datasets`).

The bottom of the data layer: `data` (splits, the embedded and synthetic data, the `DATASETS`
registry) and `datasets` (readers of real files, tensorflow-datasets and folktables) both import
this module and never each other at import time, so the data layer has no import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from jaxrecon.errors import InputError


class Dataset(NamedTuple):
    """Pooled data before any split.

    Attributes:
      name: short name used in reports.
      x: [N, d] float inputs (pixels in [0, 1] for image data).
      y: [N] raw labels: integer class ids, or float targets for regression data.
      num_classes: number of classes of `y`, or None for real-valued targets.
      image_shape: per-sample image shape (e.g. (8, 8)) or None for tabular data.
      x_min, x_max: the box the inputs live in (used to clip reconstructions).
      y_regression: [N] float target that regression models learn instead of `y` (e.g. log income
        for ACS Income), or None to regress the raw label (see `task_view`).
      regression_target: what `y_regression` is, for reports (e.g. "log(PINCP)").
      regression_drop: input columns removed for the regression task because they hold its target
        (Adult: hours_per_week).
      label_name: what the raw label `y` means, for reports (e.g. "income >50K").
      numeric_columns: [d] bool mask of raw numeric columns that `standardize` centres and scales
        with public-split statistics (tabular data), or None (nothing to standardise).
      feature_names: one name per input column (tabular data), or None.
      origin: [N] integer code of the source split each pooled row comes from (an index into
        `origin_names`), or None when the data have no source splits.
      origin_names: names of the source splits, e.g. ("train", "test").
      source: where the data were read from (a file, a tfds folder, "embedded", "generated").
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int | None
    image_shape: tuple[int, ...] | None
    x_min: float
    x_max: float
    y_regression: np.ndarray | None = None
    regression_target: str | None = None
    regression_drop: tuple[int, ...] = ()
    label_name: str | None = None
    numeric_columns: np.ndarray | None = None
    feature_names: tuple[str, ...] | None = None
    origin: np.ndarray | None = None
    origin_names: tuple[str, ...] = ()
    source: str = ""


def missing(name: str, where: str | Sequence[str], how_to_get: str) -> InputError:
    """The one-line error for a data set that is not there: where it looked and how to get it."""
    if not isinstance(where, str):
        where = ", ".join(where)
    return InputError(f"--dataset {name}: not found (looked in {where}); {how_to_get}")


def data_dir_path(data_dir: str | None, *parts: str) -> str | None:
    """os.path.join(data_dir, *parts) with `~` expanded, or None without a data dir."""
    if data_dir is None:
        return None
    return os.path.join(os.path.expanduser(data_dir), *parts)
