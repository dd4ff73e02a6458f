"""Build of actorflow's optional C extensions; the project's metadata is in pyproject.toml.

``actorflow.time._marks`` (the punctuated watermark generator's pass over a batch) is compiled
when a C compiler is present. It is optional: without a compiler, or when it does not compile, the
install goes on and actorflow runs its pure-Python version of the same pass
(``actorflow/time/watermarks.py``), as it does with ``ACTORFLOW_PURE_PYTHON=1``.

``actorflow.operators._keyed_loop`` (the keyed process operator's per-record loop) is optional in
the same way: its Python twin is the operator's own loop (``actorflow/operators/process.py``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("actorflow.time._marks", sources=["actorflow/time/_marks.c"], optional=True),
        Extension(
            "actorflow.operators._keyed_loop", sources=["actorflow/operators/_keyed_loop.c"], optional=True
        ),
    ],
)
