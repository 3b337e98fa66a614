"""Project tooling run by build.py (default model zoo, demo). Not shipped in the extension."""
