#!/usr/bin/env bash
# Rebuilds static/vendor/ from the pinned npm packages (package.json, package-lock.json).
# Only needed when a pin changes: the built files are committed, so installing and running
# the project needs Python alone.
set -euo pipefail
cd "$(dirname "$0")"

npm ci --no-audit --no-fund
version=$(node -p 'require("./node_modules/echarts/package.json").version')
out=static/vendor
mkdir -p "$out"
{
  echo "/*! Apache ECharts ${version} (bar, line, grid, tooltip, legend, aria; canvas) — Apache-2.0, see echarts-LICENSE.txt and echarts-NOTICE.txt; includes zrender (BSD-3-Clause) and tslib (0BSD). */"
  node_modules/.bin/esbuild echarts-entry.js --bundle --minify --format=esm \
    --legal-comments=none --log-level=warning
} > "$out/echarts.min.js"
cp node_modules/echarts/LICENSE "$out/echarts-LICENSE.txt"
cp node_modules/echarts/NOTICE "$out/echarts-NOTICE.txt"
cp node_modules/echarts/licenses/LICENSE-d3 "$out/echarts-LICENSE-d3.txt"
cp node_modules/zrender/LICENSE "$out/zrender-LICENSE.txt"
cp node_modules/tslib/LICENSE.txt "$out/tslib-LICENSE.txt"
echo "vendored echarts ${version}: $(wc -c < "$out/echarts.min.js") bytes"
