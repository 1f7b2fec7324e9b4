"""Loads the source model in whichever format it came: SavedModel, `.keras` (Keras 2 or 3), `.h5`.

Optimizer layer. Keras 2 models (tf_keras) can be pruned; Keras 3 models and plain SavedModels can
only be quantized, and pruning them fails with a message that says so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from optimodel.errors import InputError
from optimodel.optimize.tf import keras, tf

ModelKind = Literal["tf_keras", "keras3", "saved_model"]
FIELD = "spec.source.uri"


@dataclass
class SourceModel:
    kind: ModelKind
    model: Any
    path: Path
    input_shape: tuple[int | None, ...]

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Outputs of the original model, in batches, the baseline the candidates are judged against."""
        outputs = []
        for start in range(0, x.shape[0], batch_size):
            batch = x[start:start + batch_size]
            if self.kind == "saved_model":
                signature = self.model.signatures["serving_default"]
                (name,) = signature.structured_input_signature[1].keys()
                result = signature(**{name: tf.constant(batch)})
                outputs.append(next(iter(result.values())).numpy())
            else:
                outputs.append(np.asarray(self.model(batch, training=False)))
        return np.concatenate(outputs, axis=0)

    def converter(self, workdir: Path) -> Any:
        """A TFLite converter for this model; Keras 3 models go through an exported SavedModel."""
        if self.kind == "tf_keras":
            return tf.lite.TFLiteConverter.from_keras_model(self.model)
        if self.kind == "keras3":
            exported = workdir / "keras3-export"
            if not exported.exists():
                self.model.export(str(exported), verbose=False)
            return tf.lite.TFLiteConverter.from_saved_model(str(exported))
        return tf.lite.TFLiteConverter.from_saved_model(str(self.path))


def _shape(shape: Any) -> tuple[int | None, ...]:
    if isinstance(shape, list) and shape and isinstance(shape[0], list | tuple):
        if len(shape) != 1:
            raise InputError(f"the model has {len(shape)} inputs; optimodel supports models with one input",
                             field=FIELD)
        shape = shape[0]
    return tuple(None if d is None else int(d) for d in tuple(shape))


def _load_tf_keras(path: Path) -> SourceModel:
    model = keras.models.load_model(str(path), compile=False)
    return SourceModel("tf_keras", model, path, _shape(model.input_shape))


def _load_keras3(path: Path) -> SourceModel:
    import keras as keras3

    model = keras3.models.load_model(str(path), compile=False)
    return SourceModel("keras3", model, path, _shape([tuple(i.shape) for i in model.inputs]))


def _load_saved_model(path: Path) -> SourceModel:
    loaded = tf.saved_model.load(str(path))
    if "serving_default" not in getattr(loaded, "signatures", {}):
        raise InputError("the SavedModel has no serving_default signature", field=FIELD)
    inputs = loaded.signatures["serving_default"].structured_input_signature[1]
    if len(inputs) != 1:
        raise InputError(f"the model has {len(inputs)} inputs; optimodel supports models with one input",
                         field=FIELD)
    spec = next(iter(inputs.values()))
    return SourceModel("saved_model", loaded, path, _shape(spec.shape.as_list()))


def load_source_model(path: Path, uri: str) -> SourceModel:
    """Try the loaders that fit the file; a file none can read is reported as corrupt."""
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise InputError(f"{uri} is a directory without saved_model.pb: not a SavedModel", field=FIELD)
        loaders = [_load_tf_keras, _load_saved_model]
    elif path.suffix == ".h5":
        loaders = [_load_tf_keras]
    elif path.suffix == ".keras":
        loaders = [_load_tf_keras, _load_keras3]
    else:
        raise InputError(f"{uri}: expected a SavedModel directory, a .keras or a .h5 file", field=FIELD)
    problems = []
    for loader in loaders:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return loader(path)
        except InputError:
            raise
        except Exception as error:  # noqa: BLE001 - each loader fails in its own way on a foreign file
            problems.append(f"{loader.__name__.removeprefix('_load_')}: {str(error).splitlines()[0][:200]}")
    raise InputError(f"{uri} could not be loaded as a model ({'; '.join(problems)})", field=FIELD)
