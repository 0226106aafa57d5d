"""The dashboard's pages, one module each; importing them attaches them to the blueprint."""

from hub.dashboard.views import client, journey, portfolio, preview, signin  # noqa: F401
