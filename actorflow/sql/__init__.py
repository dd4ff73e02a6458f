"""Streaming SQL: Flink SQL's dialect, parsed with sqlglot (an optional dependency, the ``sql`` extra).

``actorflow.sql.dialect`` parses scripts into sqlglot syntax trees (``parse``, the ``Flink`` dialect,
built from ``actorflow.sql.parser`` and ``actorflow.sql.generator``), ``actorflow.sql.nodes`` holds
the nodes Flink needs beyond sqlglot's and ``actorflow.sql.accessors`` reads the parts of a statement
the planner needs. This layer sits above ``actorflow.api``.
"""
