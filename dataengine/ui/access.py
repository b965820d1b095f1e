"""Who may reach the review app: how it is bound (`AppSettings`), the token, and the same-origin rule for writes.

- bound to loopback; any other bind needs a token (`AppSettings.token`), sent as `Authorization: Bearer <token>`,
  or once as `?token=` (which sets a cookie for the pages);
- on loopback, requests naming another host are refused (`LOOPBACK_NAMES`, checked by Starlette's
  TrustedHostMiddleware: a web page cannot reach the app by DNS rebinding);
- writes must be JSON from the app's own origin (a form on another site cannot post to it).
"""

from __future__ import annotations

import getpass
import ipaddress
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware

TOKEN_COOKIE = "dataengine_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AppSettings:
    """How the app is served. `token` is required unless `host` is a loopback address."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = field(default=None, repr=False)
    export_target: str = "exports"  # where the export button ships batches (a folder or s3://bucket/prefix)
    cache_dir: str = "ui-cache"  # rendered crops, by content
    # The pool indexes "find similar" searches (fdb.pool_index): the mining runs' own, <data home>/indexes, so the
    # app reuses what they built instead of building its own.
    index_root: str = "indexes"
    user: str = field(default_factory=getpass.getuser)  # who a decision is recorded for, unless the page says

    def check(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"binding to {self.host} exposes the feature database beyond this machine: set a token "
                             "(DATAENGINE_UI_TOKEN, at least 16 characters), or bind to 127.0.0.1")
        if self.token is not None and len(self.token) < 16:
            raise ValueError("the token must be at least 16 characters")


class Guard(BaseHTTPMiddleware):
    """The token (when one is set) and the same-origin rule for writes."""

    def __init__(self, app, settings: AppSettings):
        super().__init__(app)
        self.settings = settings

    async def dispatch(self, request: Request, call_next):
        token = self.settings.token
        if token:
            given = request.query_params.get("token")
            if given is not None and request.method == "GET" and secrets.compare_digest(given, token):
                return _log_in(request, token)
            header = request.headers.get("authorization", "")
            sent = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(TOKEN_COOKIE, "")
            if not (sent and secrets.compare_digest(sent, token)):
                return refuse(request, 401, "a token is required: send 'Authorization: Bearer <token>', or open "
                                            "the app once with ?token=<token>")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return refuse(request, 415, "writes take JSON (Content-Type: application/json)")
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc != request.headers.get("host"):
                return refuse(request, 403, f"a write from another origin ({origin}) is refused")
        return await call_next(request)


def _log_in(request: Request, token: str) -> Response:
    """A link with the token logs the browser in once; the address bar then loses the token."""
    target = request.url.remove_query_params("token")
    response = RedirectResponse(str(target.path) + (f"?{target.query}" if target.query else ""), status_code=303)
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
    return response


def refuse(request: Request, status: int, message: str) -> Response:
    """A refusal as the asker reads it: JSON for the API and scripts, a short page for a browser."""
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"detail": message}, status_code=status)
    return HTMLResponse(f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{message}</p>", status_code=status)
