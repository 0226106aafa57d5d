"""The conversion probe: right before a step fires, ask the source's platform whether the
checkout was completed after all.

Webhooks arrive late or never; a reminder to someone who has paid costs the shop more than
the reminder can earn. So where the journey's source has a :class:`hub.ConversionProbe` and the
tenant allows it (``[probe] enabled``, default on), the step waits for the platform at most
``[probe] timeout``. Its answer is a hint, never a gate: when the platform is slow, down or
answers nonsense, the step goes ahead and the failure is counted and logged.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests
import sqlalchemy as sa

from hub.engine.journeys import Journeys
from hub.engine.ledger import Ledger
from hub.engine.runtime import Runtime
from hub.events import load_event
from hub.hookspecs import ProbeQuestion
from hub.store import journeys
from hub.tenants import Tenant

log = logging.getLogger("hub.engine")

CONVERTED_REASON = "converted (probe)"


class Prober:
    """Asks a journey's probe with a hard time bound, and closes a converted journey."""

    def __init__(self, rt: Runtime, journeys: Journeys, ledger: Ledger) -> None:
        self.rt = rt
        self.journeys = journeys
        self.ledger = ledger

    def ask(self, tenant: Tenant, journey: Any, step_index: int) -> str | None:
        """``converted``, ``open``, ``timeout`` or ``error``; ``None`` when nobody was asked
        (tenant turned it off, the source has no probe, its table lacks the credentials)."""
        probes = getattr(self.rt.hub, "probes", None) or {}
        probe = probes.get(journey.source)
        config = tenant.sources.get(journey.source)
        if not tenant.probe.enabled or probe is None or not config:
            return None
        try:
            if not probe.ready(config):
                return None
        except Exception:
            log.exception("conversion probe of %s: ready() raised", journey.source)
            return None
        event = load_event({**journey.event, "raw": None})
        question = ProbeQuestion(
            tenant=tenant.slug,
            source=journey.source,
            checkout_id=journey.checkout_id,
            email=journey.email,
            abandoned_at=journey.abandoned_at,
            event=event,
        )
        outcome, detail = bounded(probe, question, config, tenant.probe.timeout.total_seconds())
        if self.rt.metrics:
            self.rt.metrics.probe(journey.source, outcome)
        if outcome in ("timeout", "error"):
            reason = f"conversion probe {outcome}: {detail}; sending anyway"
            log.warning(
                "probe journey=%s step=%s source=%s outcome=%s detail=%s",
                journey.id,
                step_index,
                journey.source,
                outcome,
                detail,
            )
            with self.rt.store.begin() as conn:
                self.ledger.log(
                    conn, journey, step_index, None, None, None, 0, "probe_failed", reason
                )
        return outcome

    def close_converted(self, journey: Any) -> bool:
        """Close the journey as converted (as a late conversion webhook would); ``False`` when
        something else closed it meanwhile."""
        now = self.rt.clock()
        with self.rt.store.begin() as conn:
            row = conn.execute(
                self.rt.store.lock(conn, sa.select(journeys).where(journeys.c.id == journey.id))
            ).first()
            if row is None or row.status != "open":
                return False
            sent = self.journeys.messages_sent(conn, journey.id)
            cart = (row.event or {}).get("cart") or {}
            self.journeys.close(
                conn,
                journey.id,
                "converted",
                CONVERTED_REASON,
                now,
                recovered=bool(sent),
                recovered_amount=cart.get("total"),
                recovered_currency=cart.get("currency"),
            )
        return True


def bounded(
    probe: Any, question: ProbeQuestion, config: Any, timeout: float
) -> tuple[str, str | None]:
    """Ask ``probe`` in a thread and stop waiting after ``timeout`` seconds.

    The thread is left to finish on its own (the plugin passed ``timeout`` to its HTTP calls,
    so it ends soon): a plugin that ignores the timeout still cannot hold a step longer.
    """
    answer: dict[str, Any] = {}

    def run() -> None:
        try:
            answer["converted"] = bool(probe.converted(question, config, timeout))
        except Exception as exc:  # the plugin's failure is the probe's outcome, not ours
            answer["error"] = exc

    worker = threading.Thread(target=run, name=f"probe-{question.source}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return "timeout", f"no answer within {timeout:g}s"
    if "error" in answer:
        exc = answer["error"]
        kind = "timeout" if isinstance(exc, requests.exceptions.Timeout) else "error"
        return kind, f"{exc.__class__.__name__}: {exc}"[:300]
    return ("converted" if answer["converted"] else "open"), None
