"""Trains the reference models on scikit-learn's bundled digits (no download) and writes the data.

Writes, under --out (skipping whatever already exists, so `make demo` is fast the second time):
  models/digits-wide.h5      conv + 2x Dense(2048), about 8.4M parameters (about 34 MB as float32)
  models/digits-small.h5     conv + 2x Dense(256), about 0.6M parameters
  data/train.npz, data/calibration.npz, data/test.npz   arrays x (N, 8, 8, 1) in [0, 1] and y (N,)

Models are saved with tf_keras (Keras 2) so tensorflow-model-optimization can prune them.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

WIDTHS = {"digits-wide": 2048, "digits-small": 256}


def split_digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The one split every reference model uses (make_mobilenet.py upscales it), so figures compare."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return {"train": (x_train, y_train), "calibration": (x_train[:200], y_train[:200]), "test": (x_test, y_test)}


def write_data(out: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    (out / "data").mkdir(parents=True, exist_ok=True)
    for name, (xs, ys) in splits.items():
        path = out / "data" / f"{name}.npz"
        if not path.exists():
            np.savez(path, x=xs, y=ys)


def train(name: str, width: int, x: np.ndarray, y: np.ndarray, epochs: int, path: Path) -> None:
    from optimodel.optimize.tf import keras, tf  # Keras 2, and TensorFlow's C++ start-up chatter filtered

    tf.random.set_seed(0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input(shape=(8, 8, 1), name="image"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dense(10, activation="softmax", name="probabilities"),
    ], name=name.replace("-", "_"))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # .h5 is "legacy" to tf_keras, and the input format this example shows
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
        model.save(path, include_optimizer=False)
    print(f"trained {name}: {model.count_params():,} parameters -> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(".demo"), help="output folder")
    parser.add_argument("--models", nargs="*", default=list(WIDTHS), choices=list(WIDTHS))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    splits = split_digits()
    write_data(args.out, splits)
    x_train, y_train = splits["train"]
    for name in args.models:
        path = args.out / "models" / f"{name}.h5"
        if not path.exists():
            train(name, WIDTHS[name], x_train, y_train, args.epochs, path)


if __name__ == "__main__":
    main()
