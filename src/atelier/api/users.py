"""Studio users: names and passwords, stored as scrypt hashes (Percival 2009, "Stronger key derivation via
sequential memory-hard functions"; Python's ``hashlib.scrypt``), never as the passwords themselves.

A stored hash reads ``scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>``, so the cost can be raised later
without breaking the hashes already stored. Checks compare in constant time.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from atelier.api.jobs import RUN_NAME
from atelier.api.studio_db import Conflict, NotFound, connect, now, users
from atelier.errors import ConfigError

__all__ = ["add_user", "check_password", "hash_password", "list_users", "remove_user", "verify_user"]

# n = 2**14, r = 8, p = 1: the parameters RFC 7914 and Python's docs use for interactive logins (~16 MiB, tens of
# milliseconds).
_N, _R, _P = 2**14, 8, 1
MIN_PASSWORD = 8


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def add_user(db: str | Engine, name: str, password: str) -> None:
    if not RUN_NAME.fullmatch(name):
        raise ConfigError(f"user name {name!r:.40} is not allowed: 1-64 letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"a password needs at least {MIN_PASSWORD} characters")
    engine = connect(db) if isinstance(db, str) else db
    try:
        with engine.begin() as conn:
            conn.execute(insert(users).values(name=name, password_hash=hash_password(password), created_at=now()))
    except IntegrityError:
        raise Conflict(f"a user named {name!r} already exists") from None


def remove_user(db: str | Engine, name: str) -> None:
    engine = connect(db) if isinstance(db, str) else db
    with engine.begin() as conn:
        if not conn.execute(delete(users).where(users.c.name == name)).rowcount:
            raise NotFound(f"no user named {name!r:.40}")


def list_users(db: str | Engine) -> list[str]:
    engine = connect(db) if isinstance(db, str) else db
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(users.c.name).order_by(users.c.name))]


def verify_user(db: str | Engine, name: str, password: str) -> bool:
    """Whether ``name`` exists and ``password`` is theirs (the same work is done for an unknown name, so the
    answer's timing does not tell which names exist)."""
    engine = connect(db) if isinstance(db, str) else db
    with engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash).where(users.c.name == name)).scalar()
    if stored is None:
        check_password(password, _dummy())
        return False
    return check_password(password, stored)


@functools.cache
def _dummy() -> str:
    return hash_password(secrets.token_hex(8))
