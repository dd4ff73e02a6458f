"""The command line: ``actorflow run <module:attr | path.py>``. The top layer."""
