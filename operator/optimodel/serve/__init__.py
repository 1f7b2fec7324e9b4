"""The LiteRT model server (`optimodel serve`). Serve layer.

Imports LiteRT (in `model` only), aiohttp, prometheus_client, numpy, pydantic and the package's
storage and spec; never TensorFlow, kopf or the Kubernetes client (the serving image has none).
Modules: model -> pool -> dataplane -> v1/v2 transports -> app -> cli; errors and metrics beside.
"""
