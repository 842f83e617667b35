"""``river worker``: run an app's workers as a long-lived, operable process.

- :mod:`river.worker._config`: the TOML file (pydantic) and the plan built from it;
- :mod:`river.worker._app`: loading ``APP`` (``module:attribute``);
- :mod:`river.worker._runner`: one worker process (signals, two-level stop, reload);
- :mod:`river.worker._reconcile`: a reload as a reconciliation of the client's queues;
- :mod:`river.worker._health`: ``/livez``, ``/readyz``, ``/metrics``;
- :mod:`river.worker._supervisor`: ``--processes N`` and ``--reload``;
- :mod:`river.worker._watch`: file watching;
- :mod:`river.worker._logs`: where log lines go (``--log-format``, ``--log-handler``).

The command is documented in docs/worker.md. The names exported here are for tools that want
to validate a worker configuration file without running it::

    from river.worker import build_plan, load_app, load_file

    file = load_file("river.toml")  # raises WorkerConfigError naming the key and the rule
    plan = build_plan(file, load_app("myapp.jobs:workers"), path="river.toml")
"""

from river.worker._app import AppError, load_app
from river.worker._cli import register_worker_commands
from river.worker._config import Plan, WorkerConfigError, WorkerFile, build_plan, load_file

__all__ = [
    "AppError",
    "Plan",
    "WorkerConfigError",
    "WorkerFile",
    "build_plan",
    "load_app",
    "load_file",
    "register_worker_commands",
]
