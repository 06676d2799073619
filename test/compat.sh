#!/usr/bin/env bash
# The compatibility run: every test file that talks to Kafka or Elasticsearch, against the
# previous majors (Kafka 3.9.1, Elasticsearch 8.19.2) instead of the current ones that
# `npm test` starts. CI runs it after `npm test`; the README's supported-versions table
# names both.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(grep -rlE "inject\('(kafkaBrokers|elasticsearchUrl)'\)" test --include='*.test.ts' | sort)
export DROVER_TEST_KAFKA_VERSION="${DROVER_TEST_KAFKA_VERSION:-3.9.1}"
export DROVER_TEST_ES_VERSION="${DROVER_TEST_ES_VERSION:-8.19.2}"
echo "compatibility run: Kafka $DROVER_TEST_KAFKA_VERSION, Elasticsearch $DROVER_TEST_ES_VERSION, ${#files[@]} files"
exec npx vitest run "${files[@]}"
