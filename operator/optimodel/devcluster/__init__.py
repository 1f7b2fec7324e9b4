"""A local Kubernetes cluster for development and tests (`make cluster`, tests/cluster).

Development-tool layer: it starts etcd, kube-apiserver, kube-controller-manager and
kube-scheduler as local processes plus a node agent that runs pods as local processes.
It must not import any other optimodel module; it may import only the standard library,
cryptography, pyyaml and the kubernetes client.
"""
