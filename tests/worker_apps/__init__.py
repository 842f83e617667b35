"""Small importable apps that the ``river worker`` tests run in real subprocesses."""
