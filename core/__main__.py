"""``python -m core ...``: every job headless. See ``core/cli``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
