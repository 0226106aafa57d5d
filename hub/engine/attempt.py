"""One delivery attempt: one channel of one step, from the ledger's claim to the outcome.

The sink is called only after the ledger row is claimed; what it raises is mapped here to
sent / retry later / failed / unknown, and the retry schedule (``backoff``) is the engine's,
never the plugin's.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from hub import attribution
from hub.engine.effects import Scheduler, StepJob
from hub.engine.ledger import SENT_STATUSES, Attempt, Ledger
from hub.engine.policy import Policy
from hub.engine.render import MessageContext
from hub.engine.runtime import Runtime
from hub.hookspecs import OutboundMessage, OutcomeUnknown, PermanentError, RetryableError
from hub.logs import mask
from hub.store import deliveries, steps
from hub.templates import TemplateMissing, message_locales
from hub.tenants import Tenant

log = logging.getLogger("hub.engine")


class Attempts:
    """Tries one channel of a step and records what happened."""

    def __init__(
        self,
        rt: Runtime,
        ledger: Ledger,
        policy: Policy,
        context: MessageContext,
        scheduler: Scheduler,
    ) -> None:
        self.rt = rt
        self.ledger = ledger
        self.policy = policy
        self.context = context
        self.scheduler = scheduler

    def deliver(
        self,
        tenant: Tenant,
        journey: Any,
        flow_step: Any,
        step_row: Any,
        sink_name: str,
        attempt: int,
        event: dict,
        existing: Any,
    ) -> tuple[str, bool]:
        """Try one channel; returns (outcome, whether the step is settled).

        ``existing`` is this channel's ledger row as the step's run read it (or ``None``).
        """
        step_id = step_row.id
        sink = self.rt.hub.sinks.get(sink_name)
        config = tenant.sinks.get(sink_name)
        channel = sink.channel if sink else "?"
        step_index = flow_step.index
        if existing is not None:
            settled = self._settled(
                existing, sink, sink_name, journey, step_row, step_index, channel
            )
            if settled is not None:
                return settled
        if sink is None or config is None:
            self.ledger.skip(
                journey,
                step_index,
                sink_name,
                channel,
                None,
                "skipped",
                "sink not installed or not configured",
            )
            return "skipped (sink not installed or not configured)", False

        context = self.context.build(tenant, journey, flow_step, sink)
        if existing is None:
            decision = self.policy.decide(tenant, journey, sink, config, event, context)
            address, status, reason = decision.address, decision.status, decision.reason
            if address is None:
                self.ledger.skip(
                    journey,
                    step_index,
                    sink_name,
                    channel,
                    None,
                    status,
                    reason,
                    evidence=decision.evidence,
                )
                return f"{status} ({reason})", False
            delivery_id = self.ledger.claim(
                tenant.slug,
                journey,
                step_id,
                step_index,
                sink_name,
                channel,
                address,
                evidence=decision.evidence,
            )
            if delivery_id is None:
                return "claimed by another run", True
            attempts = 1
        else:
            if not self.ledger.claim_retry(existing.id, attempt):
                return "retry claimed by another run", True
            delivery_id, attempts = existing.id, attempt + 1
            address = self._address_again(sink, config, event, context) or existing.identity

        attempt_row = Attempt(
            delivery_id, journey, step_index, step_id, step_row.token, sink_name, channel, attempts
        )
        return self._send(tenant, flow_step, sink, config, attempt_row, address, event, context)

    def _settled(
        self,
        existing: Any,
        sink: Any,
        sink_name: str,
        journey: Any,
        step_row: Any,
        step_index: int,
        channel: str,
    ) -> tuple[str, bool] | None:
        """The outcome a channel's ledger row already settles, or ``None`` to try it (again)."""
        if existing.status in SENT_STATUSES:
            return "already sent", True
        if existing.status in ("failed", "skipped"):
            return f"{existing.status} ({existing.reason})", False
        if existing.status == "unknown":
            return "outcome unknown; not resent", True
        if existing.status == "sending" and self.scheduler.in_flight([step_row.id]):
            # a live process holds the step's lease: slow, not crashed; it records the outcome
            return "in flight in another run", True
        if existing.status == "sending" and not (sink and sink.idempotent):
            self.ledger.record(
                Attempt(
                    existing.id,
                    journey,
                    step_index,
                    step_row.id,
                    step_row.token,
                    sink_name,
                    channel,
                    existing.attempts,
                ),
                "unknown",
                "interrupted while sending; not resent (provider has no dedupe)",
            )
            self.ledger.finish_step(
                step_row.id, journey, step_index, "unknown", "interrupted in flight"
            )
            return "unknown", True
        return None

    def _send(
        self,
        tenant: Tenant,
        flow_step: Any,
        sink: Any,
        config: Any,
        attempt: Attempt,
        address: str,
        event: dict,
        context: dict,
    ) -> tuple[str, bool]:
        """Render, call the sink once and map what it raised to the ledger's outcome."""
        journey, attempts = attempt.journey, attempt.attempts
        locales = message_locales(sink, tenant, event)
        try:
            if sink.renders_templates:
                locale, parts = self.rt.hub.renderer.render(
                    tenant.slug, flow_step.template, attempt.channel, locales, context
                )
            else:  # the text lives at the provider (WhatsApp templates): nothing to render
                locale, parts = locales[0], {}
        except TemplateMissing as exc:
            return self._failed(attempt, f"template missing: {exc}")
        except Exception as exc:
            return self._failed(attempt, f"template error: {exc}")
        message = OutboundMessage(
            tenant=tenant.slug,
            journey_id=journey.id,
            step_index=attempt.step_index,
            delivery_id=attempt.delivery_id,
            channel=attempt.channel,
            to=address,
            locale=locale,
            parts=parts,
            context=context,
            template=flow_step.template,
        )
        try:
            with self.scheduler.sending(attempt.step_id):
                provider_id = sink.send(message, config)
        except RetryableError as exc:
            if attempts >= sink.max_attempts:
                return self._failed(attempt, f"gave up after {attempts} attempts: {exc.reason}")
            delay = self.backoff(attempts, exc.retry_after)
            return self._retry_later(attempt, delay, f"{exc.reason}; retry in {delay:.0f}s")
        except PermanentError as exc:
            if exc.bounce:  # attribution: the receiving server refused the message
                self._bounced(attempt, exc.reason)
            return self._failed(attempt, exc.reason)
        except Exception as exc:  # OutcomeUnknown or a plugin's own bug mid-send
            reason = exc.args[0] if isinstance(exc, OutcomeUnknown) and exc.args else repr(exc)
            if not isinstance(exc, OutcomeUnknown):
                log.exception("sink %s raised", attempt.sink)
            if sink.idempotent and attempts < sink.max_attempts:
                return self._retry_later(
                    attempt,
                    self.backoff(attempts, None),
                    f"{reason}; provider dedupes, retrying",
                )
            self.ledger.record(attempt, "unknown", f"outcome unknown: {reason}")
            self.ledger.finish_step(
                attempt.step_id, journey, attempt.step_index, "unknown", str(reason)
            )
            return "unknown", True
        self.ledger.record(attempt, "sent", None, provider_id=provider_id, step_done=True)
        log.info(
            "delivery journey=%s step=%s sink=%s to=%s outcome=sent attempt=%s",
            journey.id,
            attempt.step_index,
            attempt.sink,
            mask(address),
            attempts,
        )
        return "sent", True

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        """Seconds until the next try: the provider's hint (clamped) or exponential ±20 %."""
        settings = self.rt.hub.settings
        if retry_after is not None:
            return min(max(float(retry_after), 1.0), settings.retry_max)
        base = settings.retry_base * (2 ** (attempts - 1))
        return min(base * self.rt.rng.uniform(0.8, 1.2), settings.retry_max)

    def _address_again(self, sink: Any, config: Any, event: dict, context: dict) -> str | None:
        try:
            return sink.address(event.get("customer") or {}, config, context)
        except Exception:
            return None

    def _failed(self, attempt: Attempt, reason: str) -> tuple[str, bool]:
        """A permanent failure of this channel: the step goes on with the next one."""
        self.ledger.record(attempt, "failed", reason)
        return f"failed ({reason})", False

    def _bounced(self, attempt: Attempt, reason: str) -> None:
        """A bounce is a tracking fact too (the failed line in the log says why)."""
        with self.rt.store.begin() as conn:
            row = conn.execute(
                sa.select(deliveries).where(deliveries.c.id == attempt.delivery_id)
            ).first()
            attribution.record_tracking(
                conn, self.rt.store, row, "bounced", self.rt.clock(), reason, log_line=False
            )

    def _retry_later(self, attempt: Attempt, delay: float, reason: str) -> tuple[str, bool]:
        """Schedule the step again; the retry job claims the ledger row by its attempt count.

        The step row keeps the retry's time (``next_attempt_at``) so that whatever else queues
        the step (the sweep, a restarted worker) waits for it instead of retrying at once.
        """
        self.ledger.record(attempt, "retrying", reason)
        now = self.rt.clock()
        at = now + timedelta(seconds=delay)
        with self.rt.store.begin() as conn:
            conn.execute(
                sa.update(steps)
                .where(steps.c.id == attempt.step_id)
                .values(next_attempt_at=at, updated_at=now)
            )
        self.scheduler.schedule(
            StepJob(
                attempt.step_id, attempt.step_token, attempt.journey.tenant, at, attempt.attempts
            )
        )
        return "retrying", True
