"""``python -m river.worker APP ...`` is ``river worker APP ...`` (the supervisor starts its
children this way, so they need no ``river`` script on PATH)."""

import sys

from river.cli import main

sys.exit(main(["worker", *sys.argv[1:]]))
