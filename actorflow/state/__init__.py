"""The state layer: key groups, keyed state descriptors, handles, and its backends (the heap;
an embedded RocksDB, imported only when chosen).

Imports only :mod:`actorflow.time`, :mod:`actorflow.runtime` and :mod:`actorflow.errors` below it.
"""
