"""The operators layer: stateless steps, process functions, sources, sinks and operator chains.

Imports :mod:`actorflow.state`, :mod:`actorflow.time`, :mod:`actorflow.runtime` below it, never
:mod:`actorflow.plan` or :mod:`actorflow.api` above it.
"""
