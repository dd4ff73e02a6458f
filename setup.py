"""Build of actorflow's optional C extension; the project's metadata is in pyproject.toml.

``actorflow.time._marks`` (the punctuated watermark generator's pass over a batch) is compiled
when a C compiler is present. It is optional: without a compiler, or when it does not compile, the
install goes on and actorflow runs its pure-Python version of the same pass
(``actorflow/time/watermarks.py``), as it does with ``ACTORFLOW_PURE_PYTHON=1``.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("actorflow.time._marks", sources=["actorflow/time/_marks.c"], optional=True),
    ],
)
