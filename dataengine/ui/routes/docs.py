"""The API's documentation pages, /docs (Swagger UI) and /redoc, with their scripts and styles served by the app
itself under /static: they render with no network (FastAPI's own pages load them from a CDN).

The files come from the `fastapi-offline` package (pinned in pyproject.toml), which ships Swagger UI's and
ReDoc's distribution files; `build_app` adds its folder to the app's static mount (`DOCS_ASSETS`). The pages also
forbid the browser to fetch anything from elsewhere (`SELF_ONLY`): ReDoc would otherwise ask a CDN for its logo,
and "Try it out" can only reach this app.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

DOCS_ASSETS = ("fastapi_offline", "static")  # (package, folder) for StaticFiles(packages=...)
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

# The pages' own inline script and styles and the images their CSS holds as data: URLs, nothing from another host.
SELF_ONLY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
             "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def _self_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = SELF_ONLY
    return page


def _static(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '')}/static/{name}"


def _openapi(request: Request) -> str:
    return request.scope.get("root_path", "") + request.app.openapi_url


@router.get("/docs")
def swagger_ui(request: Request):
    page = get_swagger_ui_html(openapi_url=_openapi(request), title=f"{request.app.title} - Swagger UI",
                               oauth2_redirect_url=OAUTH2_REDIRECT,
                               swagger_js_url=_static(request, "swagger-ui-bundle.js"),
                               swagger_css_url=_static(request, "swagger-ui.css"),
                               swagger_favicon_url=_static(request, "favicon.png"))
    return _self_only(page)


@router.get(OAUTH2_REDIRECT)
def swagger_ui_redirect():
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request):
    page = get_redoc_html(openapi_url=_openapi(request), title=f"{request.app.title} - ReDoc",
                          redoc_js_url=_static(request, "redoc.standalone.js"),
                          redoc_favicon_url=_static(request, "favicon.png"), with_google_fonts=False)
    return _self_only(page)
