"""Magnitude pruning with fine-tuning (tensorflow-model-optimization). Optimizer layer.

Pitfalls measured in FACTS.md shape this code: the model is cloned so the baseline keeps its
weights; the mask update frequency is fitted to the fine-tune length (a fine-tune shorter than
the frequency silently prunes nothing); the reached sparsity is measured, not assumed; the
wrappers are stripped before conversion.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimodel.errors import InputError
from optimodel.optimize.data import Dataset
from optimodel.optimize.tf import keras, tf
from optimodel.spec import Metric, Pruning

FIELD = "spec.optimization.pruning"


@dataclass(frozen=True)
class PrunedModel:
    model: Any
    sparsity: float


def _loss(model: Any, metric: Metric) -> Any:
    if not metric.higher_is_better:
        return keras.losses.MeanSquaredError()
    activation = getattr(model.layers[-1], "activation", None)
    from_logits = getattr(activation, "__name__", "") != "softmax"
    return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def measured_sparsity(model: Any) -> float:
    """Fraction of zeros among the kernels pruning acts on (Dense and Conv weights)."""
    zeros = total = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        values = np.asarray(kernel)
        zeros += int(np.sum(values == 0))
        total += values.size
    return zeros / total if total else 0.0


def _labels(y: np.ndarray, metric: Metric) -> np.ndarray:
    if metric.higher_is_better and y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    return y


def prune(
    source: Any,
    kind: str,
    settings: Pruning,
    training: Dataset,
    metric: Metric,
    on_epoch: Callable[[int, int], None] | None = None,
) -> PrunedModel:
    """Prune a clone of `source` to the target sparsity while fine-tuning on `training`."""
    if kind != "tf_keras":
        raise InputError(
            "pruning needs a Keras 2 (tf_keras) Sequential or functional model saved as .h5, a tf_keras "
            ".keras file or a tf_keras SavedModel; this model was saved by Keras 3 or as a plain SavedModel. "
            "Use method quantize, or re-save the model with tf_keras", field=FIELD)
    import tensorflow_model_optimization as tfmot

    if training.y is None:
        raise InputError("the .npz needs arrays x and y", field=f"{FIELD}.trainingData")
    steps_per_epoch = max(1, -(-len(training) // settings.batch_size))
    end_step = settings.ramp_epochs * steps_per_epoch
    frequency = max(1, min(100, end_step // 10))
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=settings.target_sparsity,
        begin_step=0, end_step=end_step, frequency=frequency)
    try:
        clone = keras.models.clone_model(source)
        clone.set_weights(source.get_weights())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wrapped = tfmot.sparsity.keras.prune_low_magnitude(clone, pruning_schedule=schedule)
    except ValueError as error:
        raise InputError(
            f"tensorflow-model-optimization cannot prune this model ({str(error).splitlines()[0][:200]}); "
            "subclassed models cannot be pruned: use method quantize", field=FIELD) from None

    class Progress(keras.callbacks.Callback):  # type: ignore[name-defined]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if on_epoch:
                on_epoch(epoch + 1, settings.fine_tune_epochs)

    wrapped.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss=_loss(source, metric))
    tf.random.set_seed(0)
    wrapped.fit(
        training.x.astype(np.float32), _labels(training.y, metric), batch_size=settings.batch_size,
        epochs=settings.fine_tune_epochs, verbose=0, shuffle=True,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep(), Progress()])
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    return PrunedModel(model=stripped, sparsity=measured_sparsity(stripped))
