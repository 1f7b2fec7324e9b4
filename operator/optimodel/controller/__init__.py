"""The kopf operator: `optimodel operator`. Controller layer (side effects at the edge).

May import kopf, the `kubernetes` client, `optimodel.storage` and the pure modules; never
TensorFlow or `optimodel.optimize` (the operator image has neither).
"""
