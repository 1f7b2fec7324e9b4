"""Metric arithmetic on predictions: accuracy, top5, mae, rmse. Optimizer layer, numpy only.

Baseline (TensorFlow) and candidate (LiteRT) predictions go through the same functions, so the
drop compares like with like.
"""

from __future__ import annotations

import numpy as np

from optimodel.errors import InputError
from optimodel.spec import Metric


def _labels(y: np.ndarray, classes: int) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == classes and classes > 1:
        return np.argmax(y, axis=1)
    return y.reshape(-1).astype(np.int64)


def score(metric: Metric, predictions: np.ndarray, y: np.ndarray) -> float:
    """The metric of `predictions` against the labels or targets `y`."""
    predictions = predictions.reshape(predictions.shape[0], -1)
    if metric in (Metric.ACCURACY, Metric.TOP5):
        classes = predictions.shape[1]
        if classes < 2:
            raise InputError(f"metric {metric} needs a model with one output per class; it has {classes}",
                             field="evaluation.metric")
        labels = _labels(y, classes)
        k = 1 if metric == Metric.ACCURACY else min(5, classes)
        top = np.argsort(-predictions, axis=1)[:, :k]
        return float(np.mean(np.any(top == labels[:, None], axis=1)))
    targets = y.reshape(predictions.shape[0], -1).astype(np.float64)
    if targets.shape != predictions.shape:
        raise InputError(f"y has {targets.shape[1]} values per sample, the model outputs {predictions.shape[1]}",
                         field="evaluation.data")
    error = predictions.astype(np.float64) - targets
    if metric == Metric.MAE:
        return float(np.mean(np.abs(error)))
    return float(np.sqrt(np.mean(error**2)))
