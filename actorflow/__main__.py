"""``python -m actorflow`` is the ``actorflow`` command."""

import sys

from actorflow.cli.main import main

sys.exit(main())
