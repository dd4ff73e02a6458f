"""The state layer: key groups, keyed state descriptors, handles and the heap backend.

Imports only :mod:`actorflow.time`, :mod:`actorflow.runtime` and :mod:`actorflow.errors` below it.
"""
