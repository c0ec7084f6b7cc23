#!/usr/bin/env bash
# Re-fetch the third-party JavaScript the UI serves (streamflow/ui/static/vendor/) from the npm
# registry at the pinned versions below, with each package's LICENSE. `npm pack` checks every
# tarball against the registry's integrity hash; the sha256 of each vendored file is written to
# vendor/SHA256SUMS and compared with the committed one (a changed file is reported, so a bump is
# a deliberate edit of this script plus a reviewed diff of SHA256SUMS).
# plotly.js is not vendored: the server serves the copy inside the `plotly` Python package.
# Usage: bash scripts/vendor-ui.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CYTOSCAPE=3.35.0          # graph rendering
CYTOSCAPE_DAGRE=4.0.1     # layered layout; its dist bundles @dagrejs/dagre 3.0.0 + @dagrejs/graphlib
DAGRE=3.0.0               # licence only (bundled in cytoscape-dagre)
GRAPHLIB=4.0.1            # licence only (bundled in cytoscape-dagre)

DEST=streamflow/ui/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch NAME VERSION -> unpacked in $work/NAME-dir/package
  local dir="$work/$(echo "$1" | tr '/@' '__')"
  mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "$1@$2" >/dev/null && tar xzf ./*.tgz)
  echo "$dir/package"
}

cy=$(fetch cytoscape "$CYTOSCAPE")
cyd=$(fetch cytoscape-dagre "$CYTOSCAPE_DAGRE")
dg=$(fetch @dagrejs/dagre "$DAGRE")
gl=$(fetch @dagrejs/graphlib "$GRAPHLIB")

mkdir -p "$DEST"
cp "$cy/dist/cytoscape.min.js" "$DEST/cytoscape.min.js"
cp "$cy/LICENSE" "$DEST/LICENSE.cytoscape"
cp "$cyd/dist/cytoscape-dagre.min.js" "$DEST/cytoscape-dagre.min.js"
cp "$cyd/LICENSE" "$DEST/LICENSE.cytoscape-dagre"
cp "$dg/LICENSE" "$DEST/LICENSE.dagre"
cp "$gl/LICENSE" "$DEST/LICENSE.graphlib"
cat > "$DEST/README.md" <<TXT
Third-party files served by \`streamflow ui\`, fetched by \`scripts/vendor-ui.sh\` (do not edit):

- cytoscape.min.js: cytoscape $CYTOSCAPE (MIT, LICENSE.cytoscape)
- cytoscape-dagre.min.js: cytoscape-dagre $CYTOSCAPE_DAGRE (MIT, LICENSE.cytoscape-dagre), which
  bundles @dagrejs/dagre $DAGRE (MIT, LICENSE.dagre) and @dagrejs/graphlib (MIT, LICENSE.graphlib)

plotly.js is served from the \`plotly\` Python package, not from here.
TXT

sums=$(cd "$DEST" && sha256sum cytoscape.min.js cytoscape-dagre.min.js)
if [ -f "$DEST/SHA256SUMS" ] && [ "$sums" != "$(cat "$DEST/SHA256SUMS")" ]; then
  echo "vendor-ui: the fetched files differ from SHA256SUMS (review the diff):" >&2
  diff <(cat "$DEST/SHA256SUMS") <(echo "$sums") >&2 || true
fi
echo "$sums" > "$DEST/SHA256SUMS"
echo "vendor-ui: $DEST updated"
