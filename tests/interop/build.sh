#!/bin/bash
# Builds a real xDS control plane (envoyproxy/go-control-plane 0.13.x, as Debian packages its source) for
# `make interop` and `make bench-xds`, without a Go module proxy: the Go toolchain and every golang-*-dev source
# package come from Debian trixie/sid through a private apt configuration (the system's apt setup is not touched)
# and are unpacked with dpkg -x under DEST. Nothing is installed system-wide.
#
# Origin: the xds-fileserver build recipe of the mosnx xDS test kit (build.sh + fileserver/), carried here
# unchanged but for this header and the cleanup at the end (only DEST/bin, 66 MB, stays), so the interop
# suite builds from the repository alone. fileserver/src/xdsfileserver/main.go is that kit's server, unchanged.
#
# Usage: tests/interop/build.sh [DEST]   DEST defaults to $MOSNX_XDS_HOME or /var/cache/mosnx-xds
#                                        (first run: 1-10 min, about 700 MB downloaded; later runs return at once)
# Gives DEST/bin/:
#   xds-fileserver   serves the resources of a YAML/JSON file over ADS/xDS (SotW and delta), logs REQ/ACK/NACK
#   gcp-test-server  go-control-plane's own integration harness (generates listeners/clusters, pushes updates,
#                    checks that traffic passes through the proxy after each one)
#   gcp-upstream     the echo upstream that harness expects
# Idempotent: a DEST that already has all three binaries is left as it is.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=${1:-${MOSNX_XDS_HOME:-/var/cache/mosnx-xds}}; mkdir -p "$DEST"; DEST=$(cd "$DEST" && pwd)
if [ -x "$DEST/bin/xds-fileserver" ] && [ -x "$DEST/bin/gcp-test-server" ] && [ -x "$DEST/bin/gcp-upstream" ]; then
  echo "already built: $DEST/bin"; exit 0
fi
AP=$DEST/apt-sid; mkdir -p $AP/lists/partial $AP/cache/archives/partial $AP/sources $AP/prefs $DEST/debs $DEST/bin
MIRROR=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
[ -n "$MIRROR" ] || MIRROR=$(grep -hoE '^deb +[^ ]+' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
cat > $AP/sources/sid.sources <<SRC
Types: deb
URIs: $MIRROR
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
A=(-o Dir::State::Lists=$AP/lists -o Dir::Cache=$AP/cache -o Dir::Etc::SourceList=/dev/null
   -o Dir::Etc::SourceParts=$AP/sources -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=$AP/prefs
   -o APT::Architecture=amd64)
apt-get "${A[@]}" update -qq
PKGS=$(apt-get "${A[@]}" install --print-uris -qq -y --no-install-recommends \
        golang-github-envoyproxy-go-control-plane-dev golang-1.24-go 2>/dev/null \
      | awk '{print $2}' | sed -n 's/^\(golang-[^_]*\)_\([^_]*\)_.*/\1=\2/p' | sed 's/%3a/:/g')
echo "downloading $(echo "$PKGS" | wc -l) packages"
(cd $DEST/debs && apt-get "${A[@]}" download -qq $PKGS)
mkdir -p $DEST/goroot; for f in $DEST/debs/*.deb; do dpkg -x "$f" $DEST/goroot; done
R=$DEST/goroot
export GOROOT=$R/usr/lib/go-1.24 PATH=$R/usr/lib/go-1.24/bin:$PATH GOPATH=$HERE/fileserver:$R/usr/share/gocode \
       GO111MODULE=off GOPROXY=off GOFLAGS= CGO_ENABLED=0 GOCACHE=$DEST/gocache GOTOOLCHAIN=local
go version
GCP=$R/usr/share/gocode/src/github.com/envoyproxy/go-control-plane
(cd $GCP && go build -o $DEST/bin/gcp-test-server ./pkg/test/main && go build -o $DEST/bin/gcp-upstream ./internal/upstream)
(cd $HERE/fileserver/src/xdsfileserver && go build -o $DEST/bin/xds-fileserver .)
# a DEST with the binaries is never rebuilt: the unpacked sources (2.2 GB), the Go build cache and the apt
# state only took space
rm -rf $DEST/debs $DEST/apt-sid $DEST/gocache $DEST/goroot
ls -la $DEST/bin
