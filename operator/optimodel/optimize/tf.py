"""Loads TensorFlow with Keras 2 (tf_keras): tensorflow-model-optimization works only with it.

`TF_USE_LEGACY_KERAS` must be set before TensorFlow is first imported, so every module of this
package gets TensorFlow from here.
"""

from __future__ import annotations

import os
from types import ModuleType

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from optimodel.optimize.native_logs import filtered_stderr, quiet_python_loggers  # noqa: E402

quiet_python_loggers()  # before anything imports matplotlib, whose font cache is built on first import
with filtered_stderr():  # the import and the first device query print CUDA chatter on CPU machines
    import tensorflow
    import tf_keras

    tensorflow.config.list_physical_devices()

tensorflow.get_logger().setLevel("ERROR")  # "Assets written to ..." on every conversion

tf: ModuleType = tensorflow
keras: ModuleType = tf_keras
