"""The time layer: clocks, watermark strategies and the timer service.

Imports only :mod:`actorflow.runtime` and :mod:`actorflow.errors` below it.
"""
