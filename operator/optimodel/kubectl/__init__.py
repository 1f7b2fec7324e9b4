"""`kubectl optimodel`: a kubectl plugin to watch an OptimizedModel roll out, and to retry it.

`health` and `view` are pure (the tree is a function of the gathered objects); `gather` reads with
the Kubernetes client and the user's kubeconfig, only what `kubectl get` could read with the user's
RBAC; `cli` is the console script `kubectl-optimodel`.
"""
