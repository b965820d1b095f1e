"""A small client for the Label Studio REST API: the dozen calls a batch push and a labels pull make.

Why not `label-studio-sdk`: its 2.x line (2.1.2 is what label-studio 1.23.2 ships with, and the newest) pins
`opencv-python-headless<4.13` and `numpy<=2.2.x` by resolution: `pip install --dry-run label-studio-sdk==2.1.2`
into the project's environment downgrades numpy 2.4.6 -> 2.2.6 and OpenCV 4.14 -> 4.12, and brings nltk,
datamodel-code-generator, black and Faker, because its client imports its label-interface helpers at start. The
project's builds were measured with its own pins, so the SDK stays in the server's own virtualenv
(`.venv-labelstudio`), and this module speaks the same REST endpoints with `httpx` (already a dependency). Each
method names the endpoint and the SDK method it stands for.

Credentials: the token is passed in (the edges read it from `DATAENGINE_LABELSTUDIO_TOKEN`); it never appears in a
URL, a message, a log line or a record. Both kinds of token work, as in the SDK: a personal access token (a JWT
refresh token, "Account & Settings -> Personal Access Token") is exchanged for a short-lived access token at
`/api/token/refresh/` and sent as `Bearer`; anything else is a legacy token, sent as `Token` (the organisation must
have legacy tokens enabled: `label-studio start --enable-legacy-api-token` on its first start).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import httpx

SCHEMES = {"labelstudio": "http", "labelstudios": "https"}  # labelstudios:// for a server behind TLS
TOKEN_ENV = "DATAENGINE_LABELSTUDIO_TOKEN"


class LabelStudioError(RuntimeError):
    """The server could not be reached, refused the token, or answered with an error. The message names the
    server and what to do; nothing of the batch was lost (it stays retryable)."""


@dataclass(frozen=True)
class ServerTarget:
    """`labelstudio://HOST:PORT/PROJECT_TITLE`: a server and a project on it, by title."""

    scheme: str  # http or https
    host: str
    port: int
    project: str  # the project's title (URL-decoded)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The target as the user writes it (and as a batch records it: no credentials in it, ever)."""
        prefix = next(k for k, v in SCHEMES.items() if v == self.scheme)
        return f"{prefix}://{self.host}:{self.port}/{quote(self.project, safe='')}"


def is_labelstudio(target: str) -> bool:
    return str(target).split("://", 1)[0].lower() in SCHEMES and "://" in str(target)


def parse_target(url: str) -> ServerTarget:
    """Parse `labelstudio://HOST:PORT/PROJECT` (`labelstudios://` for https). A token in the URL is refused:
    URLs end up in shell histories, logs and the batch record."""
    parts = urlsplit(url)
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"{url!r} is not a Label Studio target: labelstudio://HOST:PORT/PROJECT")
    if parts.username or parts.password:
        raise ValueError(f"a Label Studio target must not carry credentials; put the token in {TOKEN_ENV} "
                         "instead (it never goes into a URL, a log or a record)")
    project = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not project:
        raise ValueError(f"{parts.scheme}://{parts.hostname or ''}{parts.path}: expected "
                         "labelstudio://HOST:PORT/PROJECT (the project's title, URL-encoded)")
    port = parts.port or (443 if scheme == "https" else 8080)
    return ServerTarget(scheme, parts.hostname, port, project)


def _jwt_claims(token: str) -> dict | None:
    """The claims of a JWT, unverified (the server verifies it); None when `token` is not one."""
    pieces = token.split(".")
    if len(pieces) != 3:
        return None
    try:
        payload = pieces[1] + "=" * (-len(pieces[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


class LabelStudioClient:
    """One server, one token. Every call raises `LabelStudioError` with a message fit for the person at the
    terminal; `httpx` retries a refused connection twice before that."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 60.0):
        if not token:
            raise LabelStudioError(f"no token for Label Studio at {base_url}: set {TOKEN_ENV} to a personal access "
                                   "token (Account & Settings in Label Studio) or to the user's legacy token")
        self.base_url = base_url.rstrip("/")
        self._token = token
        claims = _jwt_claims(token)
        self._personal = bool(claims and claims.get("token_type") == "refresh")
        self._access: str | None = None
        self._access_until = 0.0
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                  transport=httpx.HTTPTransport(retries=2))

    def __repr__(self) -> str:  # never the token
        return f"LabelStudioClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "LabelStudioClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ transport
    def _auth_header(self) -> dict[str, str]:
        if not self._personal:
            return {"Authorization": f"Token {self._token}"}
        if self._access is None or time.time() > self._access_until - 30:
            # SDK: TokensClientExt.refresh. The refresh token itself is never sent as a bearer token.
            answer = self._send("POST", "/api/token/refresh/", json={"refresh": self._token}, auth=False)
            self._access = answer["access"]
            claims = _jwt_claims(self._access) or {}
            self._access_until = float(claims.get("exp") or time.time() + 60)
        return {"Authorization": f"Bearer {self._access}"}

    def _send(self, method: str, path: str, auth: bool = True, **kwargs):
        headers = self._auth_header() if auth else {}
        what = f"{method} {path}"
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise LabelStudioError(
                f"Label Studio at {self.base_url} does not answer ({type(exc).__name__}: {exc}): start it "
                "(`label-studio start -p PORT --internal-host 127.0.0.1`) or fix HOST:PORT in the "
                "labelstudio:// target; nothing was lost, run the same command again") from None
        if response.status_code in (401, 403):
            raise LabelStudioError(
                f"Label Studio at {self.base_url} refused the token ({response.status_code} on {what}: "
                f"{_detail(response)}): set {TOKEN_ENV} to a valid personal access token (Account & Settings -> "
                "Personal Access Token), or to the user's legacy token on a server whose organisation allows "
                "them (`label-studio start --enable-legacy-api-token` on its first start); nothing was lost, "
                "run the same command again") from None
        if response.status_code >= 400:
            raise LabelStudioError(f"Label Studio at {self.base_url} answered {response.status_code} to {what}: "
                                   f"{_detail(response)}")
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # ------------------------------------------------------------------------------------------------ endpoints
    def whoami(self) -> dict:
        """GET /api/current-user/whoami (SDK: users.whoami): checks the server and the token at once."""
        return self._send("GET", "/api/current-user/whoami")

    def find_project(self, title: str) -> dict | None:
        """The project titled exactly `title` (GET /api/projects?title=..., SDK: projects.list; the server's title
        filter is a case-insensitive substring, so the exact match is made here). Several with that title: the
        oldest, as a person would find it first in the list."""
        found, page = [], 1
        while True:
            answer = self._send("GET", "/api/projects/", params={"title": title, "page": page, "page_size": 100})
            rows = answer.get("results", []) if isinstance(answer, dict) else answer
            found += [p for p in rows if p.get("title") == title]
            if not isinstance(answer, dict) or not answer.get("next"):
                break
            page += 1
        return min(found, key=lambda p: p["id"]) if found else None

    def create_project(self, title: str, label_config: str, description: str = "") -> dict:
        """POST /api/projects/ (SDK: projects.create)."""
        return self._send("POST", "/api/projects/", json={"title": title, "label_config": label_config,
                                                           "description": description})

    def update_project(self, project_id: int, **fields) -> dict:
        """PATCH /api/projects/{id}/ (SDK: projects.update)."""
        return self._send("PATCH", f"/api/projects/{project_id}/", json=fields)

    def project(self, project_id: int) -> dict:
        """GET /api/projects/{id}/ (SDK: projects.get)."""
        return self._send("GET", f"/api/projects/{project_id}/")

    def local_storages(self, project_id: int) -> list[dict]:
        """GET /api/storages/localfiles/?project= (SDK: import_storage.local.list)."""
        return self._send("GET", "/api/storages/localfiles/", params={"project": project_id}) or []

    def create_local_storage(self, project_id: int, path: str, title: str) -> dict:
        """POST /api/storages/localfiles/ (SDK: import_storage.local.create). Never synced: the tasks are imported
        with their own data; the storage only lets the server serve files under `path` to this project."""
        return self._send("POST", "/api/storages/localfiles/",
                          json={"project": project_id, "path": path, "title": title, "use_blob_urls": True})

    def tasks(self, project_id: int, data_filters: dict[str, str] | None = None, page_size: int = 100) -> list[dict]:
        """Every task of the project whose data fields equal `data_filters` (e.g. {"batch_id": ...}), with their
        annotations and predictions (GET /api/tasks/?project=&fields=all&query=..., SDK: tasks.list)."""
        query = {"filters": {"conjunction": "and", "items": [
            {"filter": f"filter:tasks:data.{key}", "operator": "equal", "type": "String", "value": value}
            for key, value in (data_filters or {}).items()]}}
        tasks, page = [], 1
        while True:
            answer = self._send("GET", "/api/tasks/", params={
                "project": project_id, "fields": "all", "page": page, "page_size": page_size,
                "query": json.dumps(query)})
            tasks += answer.get("tasks", [])
            if len(tasks) >= int(answer.get("total", 0)) or not answer.get("tasks"):
                return tasks
            page += 1

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """POST /api/projects/{id}/import?return_task_ids=true (SDK: projects.import_tasks): tasks with their
        predictions, in one synchronous import (the community edition's); returns the new task ids."""
        answer = self._send("POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"},
                            json=tasks)
        return list((answer or {}).get("task_ids") or [])


def _detail(response: httpx.Response) -> str:
    """The server's own explanation, short: its `detail` field when it sends JSON."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:300]
    return json.dumps(body)[:300]
