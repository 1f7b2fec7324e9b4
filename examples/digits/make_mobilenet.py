"""Trains the second reference model: Keras' own MobileNetV2 on the digits, upscaled to 64x64 RGB.

digits-wide keeps 99% of its weights in two Dense layers, the case where 8-bit weights help most.
Users serve convolutional networks: inverted residual blocks, depthwise convolutions, BatchNorm,
ReLU6. This is one (`keras.applications.MobileNetV2`, width multiplier 0.35, no pretrained
weights), trained from scratch on the same split of scikit-learn's bundled digits as digits-wide
(no download), each 8x8 image upscaled bilinearly to 64x64 and repeated over 3 channels.

Writes, under --out (skipping whatever already exists):
  models/mobilenet-v2.h5   about 0.42M parameters (about 1.9 MB as .h5); about 2 minutes on 2 cores
  data/train.npz, data/calibration.npz, data/test.npz   arrays x (N, 64, 64, 3) in [0, 1] and y (N,)

The same layout as make_digits.py writes, so a spec or a benchmark takes either folder.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from make_digits import split_digits, write_data  # noqa: E402
from scipy.ndimage import zoom  # noqa: E402

NAME = "mobilenet-v2"
SIZE = 64
ALPHA = 0.35


def upscale(x: np.ndarray) -> np.ndarray:
    """(N, 8, 8, 1) -> (N, SIZE, SIZE, 3), bilinear: the input shape an RGB image model expects."""
    factor = SIZE / x.shape[1]
    scaled = zoom(x[..., 0], (1, factor, factor), order=1, grid_mode=True, mode="nearest")
    return np.repeat(np.clip(scaled, 0.0, 1.0)[..., None], 3, axis=-1).astype(np.float32)


def train(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, epochs: int, path: Path) -> None:
    from optimodel.optimize.tf import keras  # Keras 2, so that tensorflow-model-optimization can prune it

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=ALPHA, weights=None, classes=10)
    for layer in model.layers:
        # Keras' 0.999 suits ImageNet's long runs: after the ~800 steps of this one the moving
        # averages would still sit near their start, and the saved model would predict one class.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    steps = epochs * -(-len(x) // 32)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, steps)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.monotonic()
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # .h5 is "legacy" to tf_keras, and the input format the examples show
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
        model.save(path, include_optimizer=False)
    print(f"trained {NAME}: {model.count_params():,} parameters, test accuracy {accuracy:.4f}, "
          f"{time.monotonic() - started:.0f} s -> {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(".demo/mobilenet"), help="output folder")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    splits = {name: (upscale(x), y) for name, (x, y) in split_digits().items()}
    write_data(args.out, splits)
    path = args.out / "models" / f"{NAME}.h5"
    if not path.exists():
        train(*splits["train"], *splits["test"], args.epochs, path)


if __name__ == "__main__":
    main()
