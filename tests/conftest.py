"""Shared by every tier; test helpers live in tests/support (on pythonpath via pyproject)."""
