"""Loading ``APP``: ``module:attribute`` naming a ``river.Workers`` registry, a ``river.Config``,
or a factory (a callable taking no arguments) returning either."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from river._args import Workers
from river._config import Config
from river._errors import RiverError

__all__ = ["AppError", "load_app"]


class AppError(RiverError):
    """``APP`` could not be imported or does not name a registry, Config or factory."""


def _import_error_text(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}:{exc.lineno}" if exc.filename else "<unknown>"
        return f"SyntaxError: {exc.msg} ({where})"
    # The innermost frame tells where an import-time error happened in the user's code.
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def load_app(spec: str, app_dir: str | None = None) -> Config:
    """Import ``spec`` and return the base Config it stands for (its ``workers`` set).

    ``app_dir`` (default: the current directory) is put first on ``sys.path`` so that modules
    next to the config file import the same way whether ``river`` runs as a script or with
    ``python -m``. Raises :class:`AppError` with a one-line reason.
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise AppError(f"APP must be module:attribute (e.g. myapp.jobs:workers), got {spec!r}")
    directory = os.path.abspath(app_dir or os.getcwd())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise AppError(
                f"cannot import APP {spec!r}: no module named {exc.name!r} "
                f"(searched from {directory})"
            ) from None
        raise AppError(f"cannot import APP {spec!r}: {_import_error_text(exc)}") from None
    except Exception as exc:
        raise AppError(f"cannot import APP {spec!r}: {_import_error_text(exc)}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"APP {spec!r}: {module_name} has no attribute {attr_path!r}") from None
    if not isinstance(obj, Workers | Config) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise AppError(f"APP {spec!r}: the factory failed: {_import_error_text(exc)}") from None
    if isinstance(obj, Workers):
        config = Config(workers=obj)
    elif isinstance(obj, Config):
        config = obj
    else:
        raise AppError(
            f"APP {spec!r} must be a river.Workers, a river.Config, or a factory returning "
            f"one, not {type(obj).__name__}"
        )
    if config.workers is None or len(config.workers) == 0:
        raise AppError(f"APP {spec!r}: no workers are registered")
    return config
