"""The running app's hub, for the hub's own edge code (blueprints, commands, jobs).

It lives apart from the ``hub`` package's public API because that module also builds apps
(``create_app``): core modules that import the running hub from here do not depend on the
app factory, so ``hub/`` stays free of import cycles (``tests/test_structure.py``).
"""

from __future__ import annotations

from typing import Any

from flask import current_app


def current_hub() -> Any:
    """The running app's :class:`hub.app.Hub`: the whole core.

    Not for plugins: what a plugin may do is its :class:`PluginServices` (a test keeps the
    built-in plugins from importing this).
    """
    return current_app.extensions["hub"]
