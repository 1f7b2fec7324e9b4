"""TFLite conversion with post-training quantization. Optimizer layer.

Full int8 uses int8 inputs and outputs, the fastest form on CPU; the server and the evaluator
quantize and dequantize at the edges with the tensors' own parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from optimodel.errors import InputError
from optimodel.optimize.data import Dataset
from optimodel.optimize.native_logs import filtered_stderr
from optimodel.optimize.tf import tf
from optimodel.spec import QuantizationType


def _representative(calibration: Dataset, samples: int) -> Any:
    def generate() -> Iterator[list[np.ndarray]]:
        for index in range(min(samples, len(calibration))):
            yield [calibration.x[index:index + 1].astype(np.float32)]

    return generate


def convert(
    converter: Any,
    quantization: QuantizationType | None,
    calibration: Dataset | None = None,
    calibration_samples: int = 200,
    sparse: bool = False,
) -> bytes:
    """Bytes of a `.tflite` model; `quantization=None` keeps float32 (the baseline and plain pruning)."""
    optimizations = []
    if quantization is not None:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if quantization == QuantizationType.FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == QuantizationType.INT8:
        if calibration is None:
            raise InputError("required for type int8", field="spec.optimization.quantization.calibrationData")
        converter.representative_dataset = _representative(calibration, calibration_samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings(), filtered_stderr():
            warnings.simplefilter("ignore")
            return bytes(converter.convert())
    except Exception as error:  # noqa: BLE001 - the converter raises many unrelated types
        message = str(error).strip().splitlines()
        raise InputError(f"the TFLite converter refused the model: {message[-1] if message else error}",
                         field="spec.optimization") from None

