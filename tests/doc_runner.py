"""Run one docs program (tests/test_docs.py): ``python tests/doc_runner.py SPEC.json``.

The spec lists chunks, run in order in this one process: Python (one namespace for the whole
program, top-level ``await`` allowed, on one event loop kept across chunks), doctests, shell
scripts (bash, ``set -eo pipefail``) and SQL. Python is compiled under the page's name with
the page's line numbers, so a traceback points at the line of the docs. Chunks marked
``finally`` (the preludes' clean-up) run even when an earlier chunk failed.

Exit status: 0 when every chunk succeeded, 1 otherwise (the failure is on stderr).
"""

from __future__ import annotations

import ast
import asyncio
import doctest
import inspect
import json
import os
import subprocess
import sys
import traceback
from typing import Any

#: Starts a line of stdout before each docs block's own output (tests/test_docs.py splits on it).
MARKER = "\x1e<doc-block>"


def _compile(source: str, filename: str, line: int) -> Any:
    tree = ast.parse(source, filename, "exec")
    ast.increment_lineno(tree, line - 1)
    return compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


class _Program:
    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.loop: asyncio.AbstractEventLoop | None = None

    def python(self, chunk: dict[str, Any]) -> None:
        code = _compile(chunk["source"], chunk["file"], chunk["line"])
        if code.co_flags & inspect.CO_COROUTINE:
            # Top-level await: run on the program's loop, kept for the next chunks (a client
            # started in one chunk goes on running in the next).
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(eval(code, self.namespace))
        else:
            exec(code, self.namespace)

    def doctest(self, chunk: dict[str, Any]) -> None:
        parser = doctest.DocTestParser()
        test = parser.get_doctest(
            chunk["source"], self.namespace, chunk["file"], chunk["file"], chunk["line"] - 1
        )
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        runner.run(test, out=sys.stderr.write, clear_globs=False)
        if runner.failures:
            raise AssertionError(f"{runner.failures} doctest example(s) failed (above)")

    def shell(self, chunk: dict[str, Any]) -> None:
        sys.stdout.flush()
        script = "set -eo pipefail\n" + chunk["source"]
        result = subprocess.run(["bash", "-c", script], check=False, timeout=chunk["timeout"])
        if result.returncode != 0:
            raise RuntimeError(
                f"{chunk['file']}:{chunk['line']}: shell block exited {result.returncode}"
            )

    def sql(self, chunk: dict[str, Any]) -> None:
        import psycopg

        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            conn.execute(chunk["source"])

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


def main(spec_path: str) -> int:
    with open(spec_path) as fh:
        spec = json.load(fh)
    program = _Program()
    failed = False
    for chunk in spec["chunks"]:
        if failed and not chunk.get("finally"):
            continue
        if "block" in chunk:
            # Where the output of a docs block starts: the test compares an ``output`` block
            # with what the block above it printed.
            sys.stdout.flush()
            sys.stdout.write(f"{MARKER}{chunk['block']}\n")
            sys.stdout.flush()
        try:
            getattr(program, chunk["kind"])(chunk)
        except BaseException:
            failed = True
            sys.stdout.flush()
            print(
                f"\nfailed at {chunk['file']}:{chunk['line']} ({chunk['kind']}):", file=sys.stderr
            )
            traceback.print_exc()
    program.close()
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
