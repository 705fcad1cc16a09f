#!/usr/bin/env bash
# sentinel verify over a log of N events (issue 11; BENCHMARKS.md "sentinel verify"): for each
# size, a database of its own: the writer's rows and leaves by binary COPY, the real checkpointer
# every 100,000 events (S3 copies on LocalStack); then, in the same run:
#   1. raw: the verifier's join streamed by `COPY ... TO STDOUT (FORMAT binary)` into /dev/null
#      (what PostgreSQL alone costs), and log_entries alone;
#   2. `sentinel verify` as the sentinel_auditor role, under /usr/bin/time -v (peak RSS);
#   3. with ARCHIVED=1, then the month archived by the real archiver (partition dropped) and
#      `sentinel verify --archive-bucket` over the same events, from S3; then the same with
#      `--s3-only` (the log's tiles instead of log_entries, no database).
# Release build without LTO (40 minutes otherwise). Usage: bench/verify.sh [N ...]
# (default 100000 1000000); RUNS=3 runs each; KEEP=1 keeps the databases and buckets; REUSE=1
# reuses them; NO_BUILD=1 uses the binaries already built (a debug fixture will do).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# The bench's own bucket holds its checkpoints and, with ARCHIVED=1, its archive.
unset ARCHIVE_BUCKET ARCHIVE_SIGNING_KEY_ID
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p sentinel-cli --bin sentinel
  cargo build --release -q -p sentinel-verify --example fixture
fi
fixture=target/release/examples/fixture; [ -x "$fixture" ] || fixture=target/debug/examples/fixture
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
out=.local/bench; mkdir -p "$out"
base=${DATABASE_URL%/*}

join="SELECT l.log_index, l.leaf_hash, l.event_id, l.occurred_at, e.id, e.tenant_id, e.occurred_at,
  e.received_at, e.actor_id, e.actor_type, e.action, e.resource_type, e.resource_id, e.changes, e.metadata
  FROM log_entries l LEFT JOIN audit_events e ON e.tenant_id = l.tenant_id AND e.id = l.event_id
  AND e.occurred_at = l.occurred_at WHERE l.tenant_id = 'bench' ORDER BY l.log_index"

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }

for n in "${sizes[@]}"; do
  db=sentinel_bench_verify_$n bucket=sentinel-bench-verify-$n key=$out/verify-$n.vkey
  url="$base/$db"
  if [ "${REUSE:-0}" != 1 ] || ! psql -qtA "$url" -c 'SELECT 1' >/dev/null 2>&1; then
    echo "== filling $db with $n events"
    DATABASE_URL="$url" "$fixture" --database "$db" --events "$n" \
      --bucket "$bucket" --key-file "$key" > /dev/null
  fi
  auditor="$url?options=-c%20role%3Dsentinel_auditor"
  for run in $(seq "${RUNS:-3}"); do
    raw=$(seconds psql -qAt "$url" -c "COPY ($join) TO STDOUT (FORMAT binary)")
    entries=$(seconds psql -qAt "$url" -c "COPY (SELECT * FROM log_entries WHERE tenant_id = 'bench' ORDER BY log_index) TO STDOUT (FORMAT binary)")
    /usr/bin/time -v target/release/sentinel verify --tenant bench --stack bench --public-key "$key" \
      --database-url "$auditor" --checkpoint-bucket "$bucket" --no-state \
      > "$out/verify-$n.txt" 2> "$out/verify-$n.time" || { cat "$out/verify-$n.txt" "$out/verify-$n.time"; exit 1; }
    wall=$(grep 'Elapsed (wall clock)' "$out/verify-$n.time" | awk '{print $NF}')
    rss=$(grep 'Maximum resident set size' "$out/verify-$n.time" | awk '{print $NF}')
    cpu=$(grep 'Percent of CPU' "$out/verify-$n.time" | awk '{print $NF}')
    secs=$(echo "$wall" | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
    echo "n=$n run=$run verify=${secs}s ($(echo "$n / $secs" | bc) events/s, CPU $cpu, peak RSS ${rss} KiB;" \
         "$(grep -o 'Rows compared with the log [a-z ]*' "$out/verify-$n.txt"))" \
         "raw COPY of the join=${raw}s ($(echo "$n / $raw" | bc) rows/s) log_entries alone=${entries}s"
    /usr/bin/time -v target/release/sentinel verify --tenant bench --stack bench --public-key "$key" \
      --database-url "$auditor" --checkpoint-bucket "$bucket" --no-state --join \
      > "$out/verify-join-$n.txt" 2> "$out/verify-join-$n.time" || { cat "$out/verify-join-$n.txt" "$out/verify-join-$n.time"; exit 1; }
    wall=$(grep 'Elapsed (wall clock)' "$out/verify-join-$n.time" | awk '{print $NF}')
    secs=$(echo "$wall" | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
    echo "n=$n run=$run verify --join=${secs}s ($(echo "$n / $secs" | bc) events/s, peak RSS $(grep 'Maximum resident set size' "$out/verify-join-$n.time" | awk '{print $NF}') KiB)"
  done
  head -5 "$out/verify-$n.txt" | tail -2
  if [ "${ARCHIVED:-0}" = 1 ]; then
    echo "== archiving the month of $db"
    DATABASE_URL="$url" "$fixture" --archive --database "$db" --bucket "$bucket" \
      --archive-key-file "$key.archive"
    for run in $(seq "${RUNS:-3}"); do
      /usr/bin/time -v target/release/sentinel verify --tenant bench --stack bench --public-key "$key" \
        --database-url "$auditor" --checkpoint-bucket "$bucket" --no-state \
        --archive-bucket "$bucket" --archive-public-key "$key.archive" \
        > "$out/verify-archived-$n.txt" 2> "$out/verify-archived-$n.time" \
        || { cat "$out/verify-archived-$n.txt" "$out/verify-archived-$n.time"; exit 1; }
      wall=$(grep 'Elapsed (wall clock)' "$out/verify-archived-$n.time" | awk '{print $NF}')
      rss=$(grep 'Maximum resident set size' "$out/verify-archived-$n.time" | awk '{print $NF}')
      cpu=$(grep 'Percent of CPU' "$out/verify-archived-$n.time" | awk '{print $NF}')
      secs=$(echo "$wall" | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
      echo "n=$n archived run=$run verify=${secs}s ($(echo "$n / $secs" | bc) events/s, CPU $cpu, peak RSS ${rss} KiB)"
      # The same month from S3 alone: the log's tiles instead of log_entries, no database.
      /usr/bin/time -v target/release/sentinel verify --tenant bench --stack bench --public-key "$key" \
        --checkpoint-bucket "$bucket" --no-state --s3-only \
        --archive-bucket "$bucket" --archive-public-key "$key.archive" \
        > "$out/verify-s3-only-$n.txt" 2> "$out/verify-s3-only-$n.time" \
        || { cat "$out/verify-s3-only-$n.txt" "$out/verify-s3-only-$n.time"; exit 1; }
      wall=$(grep 'Elapsed (wall clock)' "$out/verify-s3-only-$n.time" | awk '{print $NF}')
      rss=$(grep 'Maximum resident set size' "$out/verify-s3-only-$n.time" | awk '{print $NF}')
      cpu=$(grep 'Percent of CPU' "$out/verify-s3-only-$n.time" | awk '{print $NF}')
      secs=$(echo "$wall" | awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
      echo "n=$n archived run=$run verify --s3-only=${secs}s ($(echo "$n / $secs" | bc) events/s, CPU $cpu, peak RSS ${rss} KiB)"
    done
    grep -E "archived events valid|manifest notes valid" "$out/verify-archived-$n.txt"
  fi
  if [ "${KEEP:-0}" != 1 ]; then
    "$fixture" --drop --database "$db" --bucket "$bucket"
  fi
done
