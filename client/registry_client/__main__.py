"""``python -m registry_client`` is the ``registry`` command."""

import sys

from .cli import main

sys.exit(main())
