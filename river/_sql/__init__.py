"""SQL query files (package data)."""
