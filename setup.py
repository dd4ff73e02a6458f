"""Build of actorflow's optional C extensions; the project's metadata is in pyproject.toml.

``actorflow.time._marks`` (the punctuated watermark generator's pass over a batch) and
``actorflow.state._keyed`` (the keyed state handles' per-record methods) are compiled when a C
compiler is present. They are optional: without a compiler, or when one does not compile, the
install goes on and actorflow runs its pure-Python version of the same code
(``actorflow/time/watermarks.py``, ``actorflow/state/keyed.py``), as it does with
``ACTORFLOW_PURE_PYTHON=1``.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("actorflow.time._marks", sources=["actorflow/time/_marks.c"], optional=True),
        # The keyed state handles' per-record methods (pure Python in actorflow/state/keyed.py).
        Extension("actorflow.state._keyed", sources=["actorflow/state/_keyed.c"], optional=True),
    ],
)
