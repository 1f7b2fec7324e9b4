"""The node agent: a kubelet stand-in that runs the pods bound to its Node as local processes,
each in its own network namespace and private mount namespace (see docs/devcluster.md)."""
