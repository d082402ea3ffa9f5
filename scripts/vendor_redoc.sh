#!/usr/bin/env bash
# ReDoc's standalone bundle for the docs function (shared/assets/docs/README.md),
# from the npm registry. Without arguments: checks that the committed copy is
# the npm package's file. With a version: replaces it with that version's.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:-2.5.4}
DIR=shared/assets/docs
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "redoc@$VERSION" >/dev/null && tar xzf "redoc-$VERSION.tgz")
if [[ $# -eq 0 ]]; then
    cmp "$work/package/bundles/redoc.standalone.js" "$DIR/redoc.standalone.js"
    echo "$DIR/redoc.standalone.js is redoc@$VERSION's"
else
    cp "$work/package/bundles/redoc.standalone.js" "$DIR/redoc.standalone.js"
    cp "$work/package/bundles/redoc.standalone.js.LICENSE.txt" "$DIR/"
    cp "$work/package/LICENSE" "$DIR/redoc-LICENSE"
    echo "replaced with redoc@$VERSION: update the version in $DIR/README.md and scripts/vendor_redoc.sh"
fi
