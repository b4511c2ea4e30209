"""``python -m registry_client.agent``: the same as the ``launch-agent`` console script."""

import sys

from .cli import main

sys.exit(main())
