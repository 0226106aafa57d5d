"""The dashboard's blueprint, on its own so that the pages in ``views/`` can attach to it
without importing the package that imports them (no import cycle)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint

_HERE = Path(__file__).parent

blueprint = Blueprint(
    "dashboard",
    "hub.dashboard",
    url_prefix="/dashboard",
    template_folder=str(_HERE / "templates"),
    static_folder=str(_HERE / "static"),
    static_url_path="/static",
)
