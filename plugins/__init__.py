"""The built-in plugins. Each subpackage is registered as an entry point of the group
``abandonment_hub`` in pyproject.toml, exactly like a third party's plugin; nothing outside this
folder imports from it."""
