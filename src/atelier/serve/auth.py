"""Who may use the studio: nobody needs to sign in on 127.0.0.1 unless a token or users are configured; any
other address needs one of them, and the server refuses to start without.

* **Access token** (``ATELIER_TOKEN`` or ``--token-file``): an API client sends ``Authorization: Bearer
  <token>``; the page signs in once with it.
* **Users** (``atelier user add NAME``): names with scrypt-hashed passwords in the studio's database.

Signing in (``POST /api/login``) sets an ``HttpOnly``, ``SameSite=Strict`` session cookie: an expiry and a
user name signed with HMAC-SHA256 under a random key kept in the database (so every server of a team accepts
it and a restart keeps people signed in). Failed sign-ins are limited per client address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from http.cookies import SimpleCookie
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from atelier.api.studio_db import meta
from atelier.api.users import list_users, verify_user
from atelier.errors import ConfigError
from atelier.serve.settings import MIN_TOKEN, TOKEN_ENV, is_loopback

__all__ = ["Access", "AuthMiddleware", "add_auth_routes", "check_exposure"]

COOKIE = "atelier_session"
SESSION_SECONDS = 14 * 24 * 3600
TOKEN_USER = "token"
# Paths anyone may fetch: the page itself (it shows the sign-in form), its files, and the liveness check.
PUBLIC_EXACT = {"/", "/api/health", "/api/login", "/api/logout", "/api/session"}
PUBLIC_PREFIXES = ("/static/",)
MAX_FAILURES = 10  # failed sign-ins per client address per minute


class Access:
    """Checks requests against the token and the users of one studio database."""

    def __init__(self, token: str | None, engine: Engine) -> None:
        if token is not None and len(token) < MIN_TOKEN:
            raise ConfigError(f"the access token must have at least {MIN_TOKEN} characters (e.g. "
                              "`python -c 'import secrets; print(secrets.token_urlsafe())'`)")
        self.token, self.engine = token, engine
        self.key = self._secret() + (hashlib.sha256(token.encode()).digest() if token else b"")
        self._users: tuple[float, set[str]] = (0.0, set())
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _secret(self) -> bytes:
        with self.engine.connect() as conn:
            found = conn.execute(select(meta.c.value).where(meta.c.key == "session_secret")).scalar()
        if found is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(meta).values(key="session_secret", value=secrets.token_hex(32)))
            except IntegrityError:
                pass  # another server wrote it first
            with self.engine.connect() as conn:
                found = conn.execute(select(meta.c.value).where(meta.c.key == "session_secret")).scalar()
        return bytes.fromhex(str(found))

    def users(self) -> set[str]:
        """The user names (re-read every few seconds: a removed user is signed out within that time)."""
        at, names = self._users
        if time.monotonic() - at > 3.0:
            names = set(list_users(self.engine))
            self._users = (time.monotonic(), names)
        return names

    @property
    def required(self) -> bool:
        return bool(self.token) or bool(self.users())

    # ------------------------------------------------------------------ sessions
    def session(self, user: str, seconds: int = SESSION_SECONDS) -> str:
        body = base64.urlsafe_b64encode(json.dumps({"u": user, "e": int(time.time()) + seconds}).encode()).decode()
        return f"{body}.{hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()}"

    def session_user(self, value: str) -> str | None:
        body, _, sig = value.partition(".")
        if not hmac.compare_digest(sig, hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body.encode()))
        except (ValueError, TypeError):
            return None
        if not isinstance(data, dict) or data.get("e", 0) < time.time():
            return None
        user = str(data.get("u"))
        if user == TOKEN_USER:
            return user if self.token else None
        return user if user in self.users() else None

    def user_of(self, headers: dict[str, str]) -> str | None:
        """The signed-in user of a request (bearer token or session cookie), or None."""
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and self.token:
            if hmac.compare_digest(auth[7:].strip().encode(), self.token.encode()):
                return TOKEN_USER
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001  (a malformed Cookie header is no session)
            return None
        return self.session_user(cookie[COOKIE].value) if COOKIE in cookie else None

    def sign_in(self, client: str, user: str | None, password: str) -> str:
        """The user a correct password (or the token) signs in as; HTTPException 401 / 429 otherwise."""
        with self._lock:
            recent = self._failures[client]
            while recent and recent[0] < time.monotonic() - 60:
                recent.popleft()
            if len(recent) >= MAX_FAILURES:
                raise HTTPException(429, "too many failed sign-ins from this address; wait a minute",
                                    headers={"Retry-After": "60"})
        if user:
            ok = verify_user(self.engine, user, password)
        else:
            ok = self.token is not None and hmac.compare_digest(password.encode(), self.token.encode())
        if not ok:
            with self._lock:
                self._failures[client].append(time.monotonic())
            raise HTTPException(401, "wrong user name or password" if user else "wrong access token")
        return user or TOKEN_USER


def check_exposure(host: str, access: Access) -> None:
    """Refuse to serve beyond this machine without a way to sign in."""
    if not is_loopback(host) and not access.required:
        raise ConfigError(f"refusing to serve on {host} without an access token: anyone who can reach it could use "
                          f"it. Set {TOKEN_ENV} (or --token-file), or add users with `atelier user add NAME`; "
                          "or bind 127.0.0.1")


class AuthMiddleware:
    """Answers 401 to every non-public request without a valid session or bearer token (when access is
    required); passes the user on as ``request.state.user``."""

    def __init__(self, app: Any, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        user = self.access.user_of(headers)
        scope.setdefault("state", {})["user"] = user
        path = scope.get("path", "")
        public = path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES)
        if user is None and not public and self.access.required:
            body = json.dumps({"detail": "sign in first: this studio needs an access token or a user's password "
                                         "(the page's sign-in form, POST /api/login, or an 'Authorization: Bearer "
                                         "<token>' header)"}).encode()
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(None, max_length=64, description="A user's name; leave out to sign in with the token.")
    password: str = Field(min_length=1, max_length=1024, description="The user's password, or the access token.")


def add_auth_routes(app: FastAPI, access: Access) -> None:
    @app.get("/api/session")
    def session(request: Request) -> dict[str, Any]:
        """Whether this studio needs signing in, and who is signed in."""
        return {"required": access.required, "user": request.state.user,
                "users": bool(access.users()), "token": bool(access.token)}

    @app.post("/api/login")
    def login(req: LoginRequest, request: Request, response: Response) -> dict[str, Any]:
        """Sign in with a user's password or the access token; sets the session cookie."""
        user = access.sign_in(request.client.host if request.client else "?", req.user, req.password)
        response.set_cookie(COOKIE, access.session(user), max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
        return {"user": user}

    @app.post("/api/logout")
    def logout(response: Response) -> dict[str, Any]:
        response.delete_cookie(COOKIE, path="/")
        return {"user": None}
