"""Digistore24 IPN: order-form contact data → abandoned, ``on_payment`` → converted."""

from hub import hookimpl
from plugins.digistore24.source import Digistore24Source


@hookimpl
def hub_sources() -> list:
    return [Digistore24Source()]
