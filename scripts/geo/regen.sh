#!/usr/bin/env bash
# Regenerates geo/boundaries/us-states.geojson from the us-atlas npm package
# (US Census Bureau cartographic state boundaries, 2017 edition, redistributed
# as TopoJSON). Run from anywhere; needs npm and go. The package tarball is
# checked against the integrity recorded here before it is used.
set -euo pipefail

PKG=us-atlas
VERSION=3.0.1
INTEGRITY='sha512-wEIZCq0ImPvGblTd8gZMqNNCPkQshugMUG/8nkSWXb02+XqNFREg9atHOKP9w6prLZTpqcLhSvdBW81MkV3/0Q=='

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "$PKG@$VERSION" >/dev/null)
tgz="$work/$PKG-$VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [[ "$got" != "$INTEGRITY" ]]; then
	echo "integrity mismatch for $PKG@$VERSION: got $got" >&2
	exit 1
fi
tar -xzf "$tgz" -C "$work"
cd "$root"
go run ./scripts/geo/topo2geojson -in "$work/package/states-10m.json" -out geo/boundaries/us-states.geojson
sha256sum geo/boundaries/us-states.geojson
