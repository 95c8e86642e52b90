"""The shared vocabulary: object keys, API resources, conditions, status types,
errors, time and its formatting.

This is the bottom layer: it imports nothing from the rest of the package and
nothing outside the standard library but attrs, so translation, the Kubernetes
plumbing, the providers and the application all speak it without depending on
each other (tests/unit/test_layers.py holds every layer to that order).
"""
