"""Metric arithmetic shared by the baseline (TensorFlow) and the candidates (LiteRT)."""

from __future__ import annotations

import numpy as np
import pytest

from optimodel.errors import InputError
from optimodel.optimize.scoring import score
from optimodel.spec import Metric

PREDICTIONS = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])


def test_accuracy_takes_integer_or_one_hot_labels() -> None:
    labels = np.array([1, 0, 1, 2])
    assert score(Metric.ACCURACY, PREDICTIONS, labels) == 0.5
    assert score(Metric.ACCURACY, PREDICTIONS, np.eye(3)[labels]) == 0.5


def test_top5_is_capped_at_the_number_of_classes() -> None:
    assert score(Metric.TOP5, PREDICTIONS, np.array([2, 2, 2, 2])) == 1.0
    ten = np.tile(np.arange(10, dtype=np.float32), (2, 1))
    assert score(Metric.TOP5, ten, np.array([9, 0])) == 0.5


def test_regression_errors() -> None:
    predicted = np.array([[1.0], [2.0], [4.0]])
    targets = np.array([1.0, 3.0, 2.0])
    assert score(Metric.MAE, predicted, targets) == pytest.approx(1.0)
    assert score(Metric.RMSE, predicted, targets) == pytest.approx(np.sqrt(5 / 3))


def test_classification_metric_on_a_single_output_is_refused() -> None:
    with pytest.raises(InputError, match="evaluation.metric: metric accuracy needs a model with one output per class"):
        score(Metric.ACCURACY, np.ones((3, 1)), np.zeros(3))


def test_targets_must_match_the_outputs() -> None:
    with pytest.raises(InputError, match="y has 2 values per sample, the model outputs 1"):
        score(Metric.MAE, np.ones((3, 1)), np.ones((3, 2)))
