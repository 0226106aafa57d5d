"""The hub's version, importable without the public API module (which builds apps)."""

__version__ = "0.1.0"
