#!/usr/bin/env bash
# The floor under one version create on SQLite: the same transaction Berth commits (the
# version row, its event, the webhook lookup for fan-out), run directly with
# Python's sqlite3 on a database Berth created, with synchronous=FULL (as Berth runs) and
# OFF (to show the fsync's share). Compare with `berth bench --only 1` at concurrency 1: the
# difference is what Berth adds around SQLite (HTTP, the reads, the async hops).
#   scripts/write-floor.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-2000}"
cargo build --release -q
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
export BERTH_ADMIN_TOKEN=floor_admin_token_0123456789 BERTH_LOG=warn
./target/release/berth serve --listen 127.0.0.1:18979 --data-dir "$dir" 2>/dev/null &
pid=$!
python3 - "$dir/berth.db" "$n" "$pid" <<'PY'
import http.client, json, os, signal, sqlite3, sys, time
path, n, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(100):
    try:
        c = http.client.HTTPConnection("127.0.0.1", 18979, timeout=10); c.request("GET", "/healthz"); c.getresponse().read(); break
    except OSError:
        time.sleep(0.1)
h = {"Authorization": "Bearer floor_admin_token_0123456789", "Content-Type": "application/json"}
for p, b in [("/api/v1/workspaces", {"name": "w"}), ("/api/v1/workspaces/w/models", {"name": "m"}),
             ("/api/v1/workspaces/w/models/m/versions", {"version": "0.0.1"})]:
    c.request("POST", p, json.dumps(b), h); r = c.getresponse(); r.read(); assert r.status == 201, (p, r.status)
os.kill(pid, signal.SIGTERM)
time.sleep(1.5)
db = sqlite3.connect(path, isolation_level=None)
payload = db.execute("SELECT payload FROM events LIMIT 1").fetchone()[0]
for sync in ("FULL", "OFF"):
    db.execute(f"PRAGMA synchronous={sync}")
    t = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO model_versions (model_id, version, sort_key, tags, status, source_experiment_key, "
                   "description, created_by, created_at, updated_at) VALUES (1, ?, ?, '[]', NULL, NULL, '', 'admin', 1, 1)",
                   (f"1.{sync}.{i}", f"k{sync}{i:08d}"))
        db.execute("INSERT INTO events (id, workspace_id, model_id, event_trigger, payload, occurred_at) "
                   "VALUES (?, 1, 1, 'MODEL_VERSION_CREATED', ?, 1) RETURNING seq", (f"e{sync}{i}", payload)).fetchone()
        db.execute("SELECT id, triggers FROM webhooks WHERE model_id = 1 AND enabled = 1").fetchall()
        db.execute("COMMIT")
    print(f"synchronous={sync}: {(time.perf_counter() - t) / n * 1e3:.3f} ms per version-create transaction")
PY
