"""Small real models and data for the engine tests: scikit-learn digits, tf_keras models trained here."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class DigitsFiles:
    root: Path
    model: Path           # tf_keras Sequential, .h5: prunable
    keras3_model: Path    # saved by Keras 3: quantizable, not prunable
    subclassed: Path      # tf_keras subclassed model as a SavedModel: not prunable
    train: Path
    calibration: Path
    test: Path

    def uri(self, path: Path) -> str:
        return f"file://{path}"


def _data(root: Path) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    np.savez(root / "train.npz", x=x[:1300], y=y[:1300])
    np.savez(root / "calibration.npz", x=x[:100])
    np.savez(root / "test.npz", x=x[1300:], y=y[1300:])
    return x[:1300], y[:1300]


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitsFiles:
    import tensorflow as tf
    import tf_keras as keras

    root = tmp_path_factory.mktemp("digits")
    x, y = _data(root)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input(shape=(8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    model.save(root / "model.h5", include_optimizer=False)

    import keras as keras3

    functional = keras3.Sequential([
        keras3.layers.Input(shape=(8, 8, 1)), keras3.layers.Flatten(), keras3.layers.Dense(10, activation="softmax")])
    functional.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    functional.fit(x, y, epochs=2, verbose=0)
    functional.save(root / "keras3.keras")

    class Subclassed(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.flatten = keras.layers.Flatten()
            self.dense = keras.layers.Dense(10, activation="softmax")

        def call(self, inputs: tf.Tensor) -> tf.Tensor:
            return self.dense(self.flatten(inputs))

    subclassed = Subclassed()
    subclassed(x[:1])
    subclassed.save(root / "subclassed", save_format="tf")
    return DigitsFiles(root=root, model=root / "model.h5", keras3_model=root / "keras3.keras",
                       subclassed=root / "subclassed", train=root / "train.npz",
                       calibration=root / "calibration.npz", test=root / "test.npz")


@pytest.fixture
def write_manifest(digits: DigitsFiles) -> Callable[..., Path]:
    """Writes the digits example as an OptimizedModel manifest, with parts replaced."""
    from tests.integration.specs import digits_spec

    def write(folder: Path, **changes: Any) -> Path:
        spec = digits_spec(digits.uri(digits.model), f"file://{digits.root}", f"file://{folder}/artifacts", **changes)
        path = folder / "manifest.yaml"
        path.write_text(yaml.safe_dump({"apiVersion": "optimodel.io/v1alpha1", "kind": "OptimizedModel",
                                        "metadata": {"name": "digits"}, "spec": spec.to_wire()}))
        return path

    return write


@pytest.fixture
def silent() -> Iterator[str]:
    """An endpoint that accepts connections (into its backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
