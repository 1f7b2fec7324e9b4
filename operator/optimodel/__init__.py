"""optimodel: optimize TensorFlow models to TFLite and roll them out on Kubernetes only when they pass.

The package is layered (see DESIGN.md and `.importlinter`): pure modules (spec, gates, contentkey,
reconcile, resources) never import TensorFlow, kopf, the Kubernetes client or boto3.
"""

__version__ = "0.1.0"
