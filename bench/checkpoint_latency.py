#!/usr/bin/env python3
"""Time from an event's 202 to the first signed checkpoint that covers it (issue 11).

With `scripts/up` running (the checkpointer fires every CHECKPOINT_RATE_SECONDS, default 60):

    source scripts/env.sh
    SENTINEL_TOKEN=$(target/debug/sentinel token --tenant latency --scope events:write) \
        python3 bench/checkpoint_latency.py [events] [seconds]

posts `events` (default 300) single events spread evenly over `seconds` (default 300), each
with an id of its own, noting when each 202 arrived; waits until a checkpoint covers the last
one; then reads, from PostgreSQL, each event's log index and the time of the first
checkpoint whose tree covers it, and prints p50, p99 and max of the difference. Both clocks
are this machine's. The checkpoint's time is taken when its run starts; it is committed
(and so served by /checkpoint) a few milliseconds later.
"""
import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone

events = int(sys.argv[1]) if len(sys.argv) > 1 else 300
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 300.0
token = os.environ["SENTINEL_TOKEN"]
base = os.environ.get("LAMBDA_INVOKE_URL", "http://[::1]:9000")
database = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sentinel")
run = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")

accepted = {}
start = time.time()
for i in range(events):
    due = start + i * seconds / events
    if due > time.time():
        time.sleep(due - time.time())
    event_id = f"latency-{run}-{i:05d}"
    body = json.dumps({"id": event_id, "actor_id": "bench", "action": "latency.probe",
                       "resource_type": "probe", "resource_id": f"p{i % 10}"}).encode()
    request = urllib.request.Request(f"{base}/lambda-url/ingest/events", data=body, method="POST",
                                     headers={"authorization": f"Bearer {token}",
                                              "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202, response.status
    accepted[event_id] = time.time()


def psql(sql):
    return subprocess.run(["psql", database, "-At", "-F", "\t", "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()


ids = ",".join(f"'{i}'" for i in accepted)
query = (
    "SELECT l.event_id, (SELECT extract(epoch FROM min(c.signed_at)) FROM checkpoints c "
    "WHERE c.tenant_id = l.tenant_id AND c.tree_size > l.log_index) "
    f"FROM log_entries l WHERE l.event_id IN ({ids})"
)
deadline = time.time() + 300
while True:
    rows = [r.split("\t") for r in psql(query)]
    covered = {r[0]: r[1] for r in rows if len(r) > 1 and r[1]}
    if len(covered) == len(accepted) or time.time() > deadline:
        break
    time.sleep(5)
missing = len(accepted) - len(covered)
latencies = sorted(float(covered[i]) - at for i, at in accepted.items() if i in covered)
pick = lambda p: latencies[min(len(latencies) - 1, round((len(latencies) - 1) * p))]
print(f"{len(accepted)} events over {seconds:.0f} s; {missing} not covered within 5 min")
print(f"202 -> first covering checkpoint: p50 {pick(0.5):.1f} s  p99 {pick(0.99):.1f} s  "
      f"max {latencies[-1]:.1f} s  min {latencies[0]:.1f} s")
