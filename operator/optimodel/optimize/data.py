"""Evaluation, calibration and training data: `.npz` files with arrays `x` and `y`. Optimizer layer.

Checked once against the model's input signature, so a misfit fails with the field and the shapes
instead of deep inside TensorFlow.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimodel.errors import InputError


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray
    y: np.ndarray | None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def head(self, count: int | None) -> Dataset:
        if count is None or count >= len(self):
            return self
        return Dataset(self.x[:count], None if self.y is None else self.y[:count])


def load_npz(path: Path, field: str, *, needs_labels: bool) -> Dataset:
    """Read `x` (and `y` when labels are needed); `field` names the spec field in errors."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if "x" not in names or (needs_labels and "y" not in names):
                wanted = "x and y" if needs_labels else "x"
                raise InputError(f"the .npz needs arrays {wanted}; it has {sorted(names) or 'none'}", field=field)
            x = np.asarray(archive["x"])
            y = np.asarray(archive["y"]) if "y" in names else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise InputError(f"not a readable .npz file ({error})", field=field) from None
    if x.ndim == 0 or x.shape[0] == 0:
        raise InputError("array x is empty", field=field)
    if needs_labels and y is not None and y.shape[0] != x.shape[0]:
        raise InputError(f"x has {x.shape[0]} samples but y has {y.shape[0]}", field=field)
    return Dataset(x=x, y=y)


def check_fits(dataset: Dataset, input_shape: tuple[int | None, ...], field: str) -> Dataset:
    """The data's sample shape must match the model's input shape (None matches anything)."""
    sample = dataset.x.shape[1:]
    expected = input_shape[1:]
    fits = len(sample) == len(expected) and all(e is None or e == s for e, s in zip(expected, sample, strict=True))
    if not fits:
        shown = "(None, " + ", ".join("None" if d is None else str(d) for d in expected) + ")"
        raise InputError(
            f"x has samples of shape {tuple(sample)}, the model expects inputs of shape {shown}", field=field)
    return Dataset(x=dataset.x.astype(np.float32), y=dataset.y)
