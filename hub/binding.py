"""Which database and tenant a job or a link was made for, and the check made before using it.

State outside the database outlives it: the embedded Redis and its append-only file under
``var/`` survive a change of ``DATABASE_URL``, two installations may share one Redis database,
a database restored from a backup hands out the same ids again, and a mail keeps its links for
years. Run against the wrong rows, a job sends a message to the wrong person. So every job
carries a :class:`Binding`: the installation (a UUID stored in the database, see
``store.installation``), the tenant, and the random token of the row it names. A job whose
binding does not match is dropped with a warning, never run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class Mismatch(Exception):
    """The job or link was made for another database, tenant or an earlier row with this id."""


@dataclass(frozen=True)
class Binding:
    """What a job was made for. ``token`` is the named row's token; event jobs carry none
    because processing a stored event is right whichever job asks for it (the row's status
    makes it happen once)."""

    installation: str
    tenant: str
    token: str | None = None

    def to_job(self) -> dict[str, str | None]:
        """Plain data for the job's arguments: readable in ``rq info``, no class to unpickle."""
        return {"installation": self.installation, "tenant": self.tenant, "token": self.token}

    @classmethod
    def from_job(cls, value: Any) -> Binding:
        """The binding a job carries; a job without one (made by an older hub) is refused."""
        if not isinstance(value, dict) or not value.get("installation"):
            raise Mismatch("the job carries no installation binding")
        return cls(str(value["installation"]), str(value.get("tenant")), value.get("token"))

    def check_installation(self, installation: str) -> None:
        if self.installation != installation:
            raise Mismatch(
                f"made for installation {self.installation}, this database is {installation}"
            )

    def check_row(self, what: str, row: Any, tenant: str | None = None) -> None:
        """Compare with the row the job names (``None``: it does not exist here).

        ``tenant`` is the row's tenant when the row itself has no ``tenant`` column.
        """
        if row is None:
            raise Mismatch(f"{what} does not exist in this database")
        row_tenant = tenant if tenant is not None else row.tenant
        if row_tenant != self.tenant:
            raise Mismatch(f"{what} belongs to tenant {row_tenant!r}, the job to {self.tenant!r}")
        if self.token is not None and row.token != self.token:
            raise Mismatch(
                f"{what} is another row than the job was made for (token differs: a restored "
                "or reset database reused the id)"
            )
