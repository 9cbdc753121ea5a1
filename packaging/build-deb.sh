#!/usr/bin/env bash
# Packages an existing bin/lockstep as a .deb with nfpm.
#
#   packaging/build-deb.sh [OUTDIR]     (default OUTDIR: dist)
#
# Environment: VERSION (Debian version, default 0.0.0~dev; a leading "v" is
# dropped), ARCH (Go architecture name, default `go env GOARCH`; it must match
# the binary's), MAINTAINER, NFPM (the nfpm command). Prints the path of the
# package as the last line.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-dist}
# nfpm is run from the module proxy, pinned, and not added to go.mod. Later
# releases need modules the proxy does not serve.
NFPM=${NFPM:-go run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2}
VERSION=${VERSION:-0.0.0~dev}
VERSION=${VERSION#v}
ARCH=${ARCH:-$(go env GOARCH)}
MAINTAINER=${MAINTAINER:-lockstep maintainers <root@localhost>}
export VERSION ARCH MAINTAINER

case $VERSION in
[0-9]*) ;;
*) echo "build-deb: VERSION=$VERSION: a Debian version starts with a digit" >&2; exit 2 ;;
esac
if [ ! -x bin/lockstep ]; then
	echo "build-deb: bin/lockstep is missing: run 'make build' first" >&2
	exit 2
fi

# The manual page, generated from the CLI's own usage texts. bin/lockstep
# may be built for another architecture: then the generator runs from source.
# nfpm ships files as they are, so the page is compressed here.
if ! env -u LOCKSTEP_CONFIG bin/lockstep man >bin/lockstep.1 2>/dev/null; then
	env -u LOCKSTEP_CONFIG go run -ldflags "-X main.version=$VERSION" ./cmd/lockstep man >bin/lockstep.1
fi
gzip -9nf bin/lockstep.1

mkdir -p "$out"
# Only the .deb of this version and architecture is replaced.
deb_arch=$ARCH
[ "$ARCH" = 386 ] && deb_arch=i386
target="$out/lockstep_${VERSION}_${deb_arch}.deb"
rm -f "$target"
$NFPM package --config packaging/nfpm.yaml --packager deb --target "$target" >&2
echo "$target"
