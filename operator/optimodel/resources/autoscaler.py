"""The HorizontalPodAutoscaler of the serving Deployment (`spec.serving.autoscaling`). Pure layer.

autoscaling/v2, one Resource metric: average CPU utilization of the serving pods, relative to their
CPU request. Named like the Deployment it scales, with the labels and owner reference of every child.
"""

from __future__ import annotations

from typing import Any

from optimodel.resources.common import Owner, metadata, serving_name
from optimodel.spec import OptimizedModelSpec


def build_autoscaler(spec: OptimizedModelSpec, owner: Owner) -> dict[str, Any]:
    autoscaling = spec.serving.autoscaling
    if autoscaling is None:
        raise ValueError("spec.serving.autoscaling is not set: there is no autoscaler to build")
    name = serving_name(owner)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(owner, name, "serving"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": autoscaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }
