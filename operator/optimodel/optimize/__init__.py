"""The optimization engine: runs in the Job pod (and in `optimodel run`). Optimizer layer.

The only layer that imports TensorFlow, tf_keras and tensorflow-model-optimization; it also uses
LiteRT to judge the optimized model in the runtime that will serve it. Import `optimodel.optimize.pipeline`
explicitly: this package's `__init__` stays light so `optimodel --help` does not load TensorFlow.
"""
