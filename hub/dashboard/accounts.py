"""Dashboard accounts: who may sign in, with which password, and which tenants they see.

An agency admin sees every tenant; a client viewer sees one tenant and changes nothing. The
database keeps only werkzeug's scrypt hash of a password. Checking a password for an unknown
address still costs one scrypt run, so the answer's timing does not tell which addresses exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from hub.store import Store, users

ADMIN = "admin"
VIEWER = "viewer"
MIN_PASSWORD = 12
# a real scrypt hash of a random password: checked against when the address is unknown
_DUMMY_HASH = generate_password_hash("not-a-password-of-anyone", method="scrypt")


@dataclass(frozen=True)
class User:
    """A signed-in person; ``tenant`` is ``None`` for an admin."""

    id: int
    email: str
    role: str
    tenant: str | None
    password_hash: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    def may_see(self, tenant: str) -> bool:
        """Whether this account may see anything of ``tenant``."""
        return self.is_admin or self.tenant == tenant

    @property
    def session_stamp(self) -> str:
        """Part of the password hash, kept in the session: a new password or a deleted and
        re-created account ends every session made before."""
        return self.password_hash[-16:]


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why, in one line."""


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_user(store: Store, email: str, password: str, tenant: str | None) -> User:
    """Create an admin (``tenant=None``) or a viewer of ``tenant``."""
    email = normalize_email(email)
    if "@" not in email or len(email) > 320:
        raise AccountError(f"{email!r} is not an e-mail address")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password needs at least {MIN_PASSWORD} characters")
    row = {
        "email": email,
        "password_hash": generate_password_hash(password, method="scrypt"),
        "role": VIEWER if tenant else ADMIN,
        "tenant": tenant or None,
        "created_at": datetime.now(UTC),
    }
    try:
        with store.begin() as conn:
            user_id = conn.execute(sa.insert(users).values(**row).returning(users.c.id)).scalar()
    except sa.exc.IntegrityError:
        raise AccountError(f"there is already an account for {email}") from None
    return User(user_id, email, row["role"], row["tenant"], row["password_hash"])


def delete_user(store: Store, email: str) -> bool:
    """Delete the account of ``email``; ``False`` when there is none."""
    with store.begin() as conn:
        done = conn.execute(sa.delete(users).where(users.c.email == normalize_email(email)))
    return bool(done.rowcount)


def list_users(store: Store) -> list[Any]:
    with store.begin() as conn:
        return list(conn.execute(sa.select(users).order_by(users.c.email)).all())


def user_by_id(store: Store, user_id: int) -> User | None:
    with store.begin() as conn:
        row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    return _user(row) if row else None


def authenticate(store: Store, email: str, password: str) -> User | None:
    """The account when ``password`` is its password, else ``None`` (same cost either way)."""
    with store.begin() as conn:
        row = conn.execute(sa.select(users).where(users.c.email == normalize_email(email))).first()
    if row is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(row.password_hash, password):
        return None
    with store.begin() as conn:
        conn.execute(
            sa.update(users).where(users.c.id == row.id).values(last_sign_in_at=datetime.now(UTC))
        )
    return _user(row)


def _user(row: Any) -> User:
    return User(row.id, row.email, row.role, row.tenant, row.password_hash)
