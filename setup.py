"""Build of actorflow's optional C extensions; the project's metadata is in pyproject.toml.

Four small modules are compiled when a C compiler is present, each the twin of pure Python that
stays as its reference (a hypothesis test checks that both answer the same):

- ``actorflow.time._marks``: the punctuated watermark generator's pass over a batch
  (``actorflow/time/watermarks.py``);
- ``actorflow.state._keyed``: the keyed state handles' per-record methods
  (``actorflow/state/keyed.py``);
- ``actorflow.operators._keyed_loop``: the keyed process operator's per-record loop
  (``actorflow/operators/process.py``);
- ``actorflow.operators.windows._pane_run``: the tumbling window operator's per-record loop over
  its panes (``actorflow/operators/windows/operator.py``).

They are optional: without a compiler, or when one does not compile, the install goes on and
actorflow runs the Python twins, as it does with ``ACTORFLOW_PURE_PYTHON=1``
(``actorflow/compiled.py`` chooses).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # The per-record loops share actorflow/_kernel.h (a change there rebuilds them).
        Extension(
            name, sources=[name.replace(".", "/") + ".c"], depends=["actorflow/_kernel.h"], optional=True
        )
        for name in (
            "actorflow.time._marks",
            "actorflow.state._keyed",
            "actorflow.operators._keyed_loop",
            "actorflow.operators.windows._pane_run",
        )
    ],
)
