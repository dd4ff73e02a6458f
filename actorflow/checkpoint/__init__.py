"""Checkpoints: snapshot storage behind one small interface (memory, filesystem, SQLite).

The layer sits between state and operators: it may import ``actorflow.state``, ``time`` and
``runtime``; operators and everything above may import it.
"""
