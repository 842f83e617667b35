"""An app that configures logging in its factory with ``dictConfig``: a handler of its own on
the ``river`` logger (and none on the root logger)."""

from __future__ import annotations

import logging.config

import river
from worker_apps.logging_app import make_config as base_config


def make_config() -> river.Config:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"app": {"format": "RIVERAPP %(levelname)s %(name)s: %(message)s"}},
            "handlers": {
                "err": {
                    "class": "logging.StreamHandler",
                    "stream": "ext://sys.stderr",
                    "formatter": "app",
                }
            },
            "loggers": {"river": {"handlers": ["err"], "level": "INFO"}},
        }
    )
    return base_config()
