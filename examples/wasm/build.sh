#!/bin/sh
# Builds the AssemblyScript example filters into filters/*.wasm.
# Needs node and npm; the built .wasm files are committed, so running mosnx or
# its tests does not. Pinned: assemblyscript 0.14.13 (newer releases cannot
# compile @solo-io/proxy-runtime 0.1.8). -O3 is asc's "optimize for speed" build:
# a filter runs on every request, so speed matters more than its size.
set -eu
cd "$(dirname "$0")"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
mkdir -p filters
for src in assembly/*.ts; do
  name=$(basename "$src" .ts)
  [ "$name" = common ] && continue
  echo "asc $src -> filters/$name.wasm"
  npx asc "$src" -b "filters/$name.wasm" --use abort=abort_proc_exit -O3
done
