#!/usr/bin/env bash
# The test command: installs missing test dependencies, vets, then runs every
# test with the race detector. Works from any directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-test-deps.sh
go vet ./...
go test -race -count=1 -timeout 12m ./...
