"""The command line, the top layer: ``actorflow run | sql | plan | config | savepoint | checkpoints``.

``main`` parses and dispatches; ``target`` finds the flow a command names; ``config`` (with
``parsing`` and ``show_config``) resolves the settings from flags, environment and a TOML file;
``daemon`` runs a flow under ``signals``, ``control`` (savepoints of a running job), ``logs`` and
``progress``; ``checkpoints`` lists a checkpoint directory and takes savepoints; ``plan_formats``
draws the plan as text, dot or Mermaid. ``sql_script`` makes a flow of a SQL script (run as
``run`` runs one); ``sql_client`` is the SQL client, with ``sql_statements`` (cutting input at its
semicolons), ``sql_tables`` (a query's rows as a table) and ``sql_live`` (a query's result live on
a terminal). See docs/operations.md.
"""
