"""An app that configures logging at import with ``logging.basicConfig`` (a root handler)."""

from __future__ import annotations

import logging
import sys

from worker_apps.logging_app import make_config

__all__ = ["make_config"]

logging.basicConfig(
    stream=sys.stderr, level=logging.INFO, format="APP %(levelname)s %(name)s: %(message)s"
)
logging.getLogger("app").info("app logging configured")
