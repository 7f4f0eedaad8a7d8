"""Contract tests share the tiny bundle fixtures of tests/conftest.py."""
