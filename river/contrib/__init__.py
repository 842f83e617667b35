"""Integrations with frameworks, each an optional extra (``river-queue[django]``).

Nothing here is imported by ``import river``: each integration imports its framework itself.
"""
