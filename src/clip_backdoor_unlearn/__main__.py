"""``python -m clip_backdoor_unlearn``: the same commands as the ``clip-backdoor-unlearn`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
