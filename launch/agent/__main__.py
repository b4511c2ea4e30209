"""``python -m launch.agent``: the same as the ``launch-agent`` console script."""

import sys

from launch.agent.cli import main

sys.exit(main())
