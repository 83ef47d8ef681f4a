#!/usr/bin/env bash
# Reproduce services/static/docs/: the Swagger UI and Redoc files /schema serves, so the docs
# render on networks without internet access. Pinned versions from npm, with their licences;
# SHA256SUMS pins the bytes (tests/unit/test_docs_assets.py checks them).
set -euo pipefail
SWAGGER_UI=5.35.0
REDOC=2.5.2
cd "$(dirname "$0")/.."
dest=services/static/docs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI" "redoc@$REDOC" >/dev/null)
mkdir -p "$work/s" "$work/r" "$dest/swagger-ui" "$dest/redoc"
tar xzf "$work/swagger-ui-dist-$SWAGGER_UI.tgz" -C "$work/s"
tar xzf "$work/redoc-$REDOC.tgz" -C "$work/r"
for f in LICENSE NOTICE swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css \
         swagger-ui-standalone-preset.js swagger-ui-standalone-preset.js.LICENSE.txt \
         favicon-32x32.png; do
  cp "$work/s/package/$f" "$dest/swagger-ui/$f"
done
for f in LICENSE bundles/redoc.standalone.js bundles/redoc.standalone.js.LICENSE.txt; do
  cp "$work/r/package/$f" "$dest/redoc/$(basename "$f")"
done
# The bundles end with a source-map comment; the maps are not shipped.
sed -i '/^\/\/# sourceMappingURL=/d' "$dest"/swagger-ui/*.js "$dest"/redoc/*.js
sed -i 's#/\*\# sourceMappingURL=[^*]*\*/##' "$dest/swagger-ui/swagger-ui.css"
# Redoc's sidebar shows a logo from its CDN: an empty inline image instead, so the page asks
# nothing of the internet (MIT licence: modification permitted; noted in VERSIONS).
sed -i "s#https://cdn.redoc.ly/redoc/logo-mini.svg#data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E#" \
  "$dest/redoc/redoc.standalone.js"
printf 'swagger-ui-dist %s\nredoc %s (CDN logo URL replaced by an inline empty image)\n' \
  "$SWAGGER_UI" "$REDOC" > "$dest/VERSIONS"
(cd "$dest" && find swagger-ui redoc -type f | sort | xargs sha256sum > SHA256SUMS)
echo "vendored into $dest:"; cat "$dest/VERSIONS"
