#!/usr/bin/env bash
# The test command: installs missing test dependencies, vets, runs every
# test with the race detector, then fuzzes the raw-packet query path and the
# registry decoder for a bounded time each (their committed corpora in
# testdata/fuzz already ran as tests). Works from any directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-test-deps.sh
go vet ./...
go test -race -count=1 -timeout 12m ./...
go test -run='^$' -fuzz='^FuzzServeRaw$' -fuzztime=30s ./dns/
go test -run='^$' -fuzz='^FuzzDecodeInstance$' -fuzztime=30s ./registry/
