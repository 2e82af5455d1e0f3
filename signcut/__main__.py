"""``python -m signcut``: the signcut command line (see signcut.cli)."""
import sys

from signcut.cli import main

sys.exit(main())
