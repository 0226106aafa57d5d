"""Shared fixtures come from the hub's own test kit (hub.testing.pytest_plugin, registered as a
pytest11 entry point), the same one third-party plugin authors use."""
