"""``python -m collector`` is the same as the ``mimecast-collector`` command."""

import sys

from collector.cli import main

sys.exit(main())
