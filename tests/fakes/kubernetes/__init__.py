"""A Kubernetes API server emulator for tests: `python -m tests.fakes.kubernetes --port=...`."""
