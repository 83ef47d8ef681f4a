"""The vendored docs assets are the pinned bytes, with their licences, and /schema's pages
name no URL outside the app."""

from __future__ import annotations

import hashlib
import re

from services.docs_assets import ASSETS, PREFIX, render_plugins


def test_vendored_files_match_their_pinned_checksums():
    lines = (ASSETS / "SHA256SUMS").read_text().splitlines()
    assert len(lines) >= 8
    for line in lines:
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == digest, name
    for licence in ("swagger-ui/LICENSE", "redoc/LICENSE"):
        assert (ASSETS / licence).stat().st_size > 500


def test_the_doc_pages_load_only_local_assets():
    urls = []
    for plugin in render_plugins():
        if not getattr(plugin, "js_url", None):
            continue  # the JSON and YAML documents: no page
        for attr in ("js_url", "css_url", "standalone_preset_js_url"):
            url = getattr(plugin, attr, None)
            if url:
                urls.append(url)
        favicon = getattr(plugin, "favicon", "")
        urls += re.findall(r"href='([^']+)'", favicon)
    assert urls and all(u.startswith(PREFIX + "/") for u in urls), urls
    for url in urls:
        assert (ASSETS / url.removeprefix(PREFIX + "/")).is_file(), url
