#!/usr/bin/env bash
# Builds FerretDB (the MongoDB-wire test server) once and caches the binary outside the clone.
# `go install` alone yields a binary that panics at start: the module lacks the generated
# build/version/version.txt, so the source is copied, the file written, and the copy built.
set -euo pipefail
version="${FERRETDB_VERSION:-v1.24.2}"
out="${1:?usage: install-ferretdb.sh OUTPUT_BINARY}"
# No pipes into `head`/`grep -q` under pipefail: a reader that stops early kills the writer
# with SIGPIPE (exit 141), which failed the first `make test` on every fresh machine.
installed_version() { "$1" --version 2>/dev/null | sed -n 's/^version: //p'; }
if [ -x "$out" ] && [ "$(installed_version "$out")" = "${version}" ]; then
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build FerretDB" >&2; exit 1; }
work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@${version}" > "$work/mod.json"
src=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Dir"])' "$work/mod.json")
cp -r "$src" "$work/src"
chmod -R u+w "$work/src"
echo "${version}" > "$work/src/build/version/version.txt"
mkdir -p "$(dirname "$out")"
(cd "$work/src" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp" ./cmd/ferretdb)
built=$(installed_version "$out.tmp")
[ "$built" = "${version}" ] || { echo "built FerretDB reports version '${built}', not ${version}" >&2; exit 1; }
mv "$out.tmp" "$out"
echo "FerretDB ${built} installed at ${out}"
