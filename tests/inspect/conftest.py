"""Fixtures for the inspect tests live in tests/inspect/fixtures.py (files generated in
code); pytest-asyncio runs the async tests (asyncio_mode = auto in pyproject.toml)."""
