"""The human-readable docs at /schema, rendered from files this app serves itself.

Swagger UI (at /schema) and Redoc (at /schema/redoc) come from services/static/docs/,
vendored from npm at pinned versions with their licences by
scripts/vendor-docs-assets.sh, so the docs render on networks without internet access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.openapi.plugins import (
    JsonRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.static_files import create_static_files_router

ASSETS = Path(__file__).parent / "static" / "docs"
PREFIX = "/static/docs"
_FAVICON = f"<link rel='icon' type='image/png' href='{PREFIX}/swagger-ui/favicon-32x32.png'>"


def render_plugins() -> list[Any]:
    return [
        SwaggerRenderPlugin(
            path="/",
            js_url=f"{PREFIX}/swagger-ui/swagger-ui-bundle.js",
            css_url=f"{PREFIX}/swagger-ui/swagger-ui.css",
            standalone_preset_js_url=f"{PREFIX}/swagger-ui/swagger-ui-standalone-preset.js",
            favicon=_FAVICON,
        ),
        RedocRenderPlugin(
            path="/redoc",
            js_url=f"{PREFIX}/redoc/redoc.standalone.js",
            google_fonts=False,
            favicon=_FAVICON,
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(),
    ]


def assets_router() -> Any:
    return create_static_files_router(
        path=PREFIX, directories=[ASSETS], include_in_schema=False, send_as_attachment=False
    )
