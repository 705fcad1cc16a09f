#!/usr/bin/env bash
# End-to-end benchmark on the local stack (release builds). usage: bench/e2e.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/install-tools
source scripts/env.sh
started=""
if ! curl -fsS "http://127.0.0.1:4566/_localstack/health" >/dev/null 2>&1; then
    localstack/start 4566 "$root/.local/localstack-bench"
    started=1
fi
trap '[ -n "$started" ] && localstack/stop "$root/.local/localstack-bench"' EXIT
cargo build --release -p ingest -p writer -p sentinel-bench --bin ingest --bin writer --bin e2e-load
SENTINEL_BIN_PROFILE=release target/release/e2e-load
