"""The delivery ledger: one ``deliveries`` row per (journey, step, sink), and the
``delivery_log`` history of every attempt and skip.

The ledger row is written *before* a sink is called and its unique key decides which run
sends, so every write that settles a delivery or a step goes through here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hub.consent_evidence import Evidence
from hub.engine.runtime import Runtime
from hub.store import deliveries, delivery_log, steps

log = logging.getLogger("hub.engine")

SENT_STATUSES = ("sent", "delivered", "read")


def identity_key(address: str) -> str:
    """The form of an address the ledger compares (frequency cap, suppressions)."""
    return address.strip().lower()


def drop_retries(
    conn: sa.Connection, journey_id: int, reason: str, now: Any, step_index: int | None = None
) -> None:
    """Settle the ``retrying`` ledger rows of a step (or a journey) that will not run again.

    A step skipped at fire time or cancelled with its journey never claims its retry: without
    this the ledger row would say ``retrying`` for ever.
    """
    where = [deliveries.c.journey_id == journey_id, deliveries.c.status == "retrying"]
    if step_index is not None:
        where.append(deliveries.c.step_index == step_index)
    conn.execute(
        sa.update(deliveries)
        .where(*where)
        .values(status="skipped", reason=f"retry dropped: {reason}", updated_at=now)
    )


@dataclass(frozen=True)
class Attempt:
    """One try of one ledger row: what every record of its outcome needs."""

    delivery_id: int
    journey: Any
    step_index: int
    step_id: int
    step_token: str
    sink: str
    channel: str
    attempts: int


class Ledger:
    """Reads and writes of ``deliveries``, ``delivery_log`` and a step's final status."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def rows(self, conn: sa.Connection, journey_id: int, step_index: int) -> dict[str, Any]:
        """The step's ledger rows by sink."""
        return {
            row.sink: row
            for row in conn.execute(
                sa.select(deliveries).where(
                    deliveries.c.journey_id == journey_id,
                    deliveries.c.step_index == step_index,
                )
            )
        }

    def claim(
        self,
        tenant: str,
        journey: Any,
        step_id: int,
        step_index: int,
        sink: str,
        channel: str,
        address: str,
        evidence: Evidence | None = None,
    ) -> int | None:
        """Insert the ``sending`` row of a first attempt; ``None`` when another run has it.

        ``evidence`` (the consent basis, hub.consent_evidence) is stored in the same
        transaction, so no message is claimed without it.
        """
        now = self.rt.clock()
        with self.rt.store.begin() as conn:
            # the ledger's unique key decides who sends; a conflict inserts nothing (no
            # savepoint and IntegrityError round trips)
            delivery_id = conn.execute(
                self.rt.store.insert_unless_exists(deliveries)
                .values(
                    tenant=tenant,
                    journey_id=journey.id,
                    step_index=step_index,
                    sink=sink,
                    channel=channel,
                    identity=identity_key(address),
                    status="sending",
                    attempts=1,
                    created_at=now,
                    updated_at=now,
                )
                .returning(deliveries.c.id)
            ).scalar()
            if delivery_id is None:
                return None
            if evidence is not None:
                evidence.write(conn, journey, step_index, sink, delivery_id, now)
            conn.execute(
                sa.update(steps)
                .where(steps.c.id == step_id)
                .values(status="retrying", updated_at=now)
            )
        return delivery_id

    def claim_retry(self, delivery_id: int, attempt: int) -> bool:
        """Take the row for retry ``attempt``; ``False`` when another run already took it."""
        with self.rt.store.begin() as conn:
            claimed = conn.execute(
                sa.update(deliveries)
                .where(
                    deliveries.c.id == delivery_id,
                    deliveries.c.attempts == attempt,
                    deliveries.c.status.in_(("retrying", "sending")),
                )
                .values(status="sending", attempts=attempt + 1, updated_at=self.rt.clock())
            ).rowcount
        return bool(claimed)

    def record(
        self,
        attempt: Attempt,
        status: str,
        reason: str | None,
        provider_id: str | None = None,
        step_done: bool = False,
    ) -> None:
        """Update the ledger row and append the attempt to the delivery log; with
        ``step_done`` the step is marked ``status`` in the same transaction (one commit)."""
        now = self.rt.clock()
        values: dict[str, Any] = dict(status=status, reason=reason, updated_at=now)
        if status == "sent":
            values.update(sent_at=now, provider_id=provider_id)
        with self.rt.store.begin() as conn:
            conn.execute(
                sa.update(deliveries).where(deliveries.c.id == attempt.delivery_id).values(**values)
            )
            if step_done:
                conn.execute(
                    sa.update(steps)
                    .where(steps.c.id == attempt.step_id)
                    .values(status=status, reason=f"{status} via {attempt.sink}", updated_at=now)
                )
            self.log(
                conn,
                attempt.journey,
                attempt.step_index,
                attempt.sink,
                attempt.channel,
                attempt.delivery_id,
                attempt.attempts,
                status,
                reason,
            )
        if self.rt.metrics:
            self.rt.metrics.delivery(attempt.journey.tenant, attempt.sink, status, reason)
        if status != "sent":
            log.info(
                "delivery journey=%s step=%s sink=%s outcome=%s attempt=%s reason=%s",
                attempt.journey.id,
                attempt.step_index,
                attempt.sink,
                status,
                attempt.attempts,
                reason,
            )

    def skip(
        self,
        journey: Any,
        step_index: int,
        sink_name: str,
        channel: str,
        identity: str | None,
        status: str,
        reason: str,
        evidence: Evidence | None = None,
    ) -> None:
        """A channel that was not tried: a ledger row with no attempt (once per channel);
        ``evidence`` of the refusal goes in the same transaction."""
        now = self.rt.clock()
        with self.rt.store.begin() as conn:
            try:
                with conn.begin_nested():
                    delivery_id = conn.execute(
                        sa.insert(deliveries)
                        .values(
                            tenant=journey.tenant,
                            journey_id=journey.id,
                            step_index=step_index,
                            sink=sink_name,
                            channel=channel,
                            identity=identity,
                            status=status,
                            reason=reason,
                            attempts=0,
                            created_at=now,
                            updated_at=now,
                        )
                        .returning(deliveries.c.id)
                    ).scalar_one()
            except sa.exc.IntegrityError:
                return
            if evidence is not None:
                evidence.write(conn, journey, step_index, sink_name, delivery_id, now)
            self.log(conn, journey, step_index, sink_name, channel, delivery_id, 0, status, reason)
        if self.rt.metrics:
            self.rt.metrics.delivery(journey.tenant, sink_name, status, reason)
        log.info(
            "delivery journey=%s step=%s sink=%s outcome=%s reason=%s",
            journey.id,
            step_index,
            sink_name,
            status,
            reason,
        )

    def finish_step(
        self, step_id: int, journey: Any, step_index: int, status: str, reason: str
    ) -> str:
        """Settle the step row (a skip also goes to the delivery log); returns the job's note."""
        now = self.rt.clock()
        with self.rt.store.begin() as conn:
            conn.execute(
                sa.update(steps)
                .where(steps.c.id == step_id)
                .values(status=status, reason=reason, updated_at=now)
            )
            if status == "skipped":
                drop_retries(conn, journey.id, reason, now, step_index)
                self.log(conn, journey, step_index, None, None, None, 0, "skipped", reason)
        log.info("step id=%s journey=%s outcome=%s reason=%s", step_id, journey.id, status, reason)
        return f"{status}: {reason}"

    def log(
        self,
        conn: sa.Connection,
        journey: Any,
        step_index: int,
        sink: str | None,
        channel: str | None,
        delivery_id: int | None,
        attempt: int,
        status: str,
        reason: str | None,
    ) -> None:
        """Append one line to the delivery log inside the caller's transaction."""
        conn.execute(
            sa.insert(delivery_log).values(
                tenant=journey.tenant,
                journey_id=journey.id,
                step_index=step_index,
                sink=sink,
                channel=channel,
                delivery_id=delivery_id,
                attempt=attempt,
                status=status,
                reason=reason,
                at=self.rt.clock(),
            )
        )
