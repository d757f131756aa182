#!/usr/bin/env bash
# Profiles the server side of version creation (benchmark scenario 1 at concurrency 1) with
# callgrind, which counts instructions: repeatable on a shared, noisy machine where `perf`
# gets no samples. Prints the inclusive cost of the top functions.
#   scripts/profile-writes.sh [N_CREATES] [--database-url URL]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-2000}"
shift || true
[ -n "${BERTH_PROFILE_NO_BUILD:-}" ] || cargo build --release -q
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
export BERTH_ADMIN_TOKEN=profile_admin_token_0123456789 BERTH_LOG=warn
valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
  ./target/release/berth serve --listen 127.0.0.1:18977 --data-dir "$dir/data" "$@" \
  2>"$dir/valgrind.log" &
pid=$!
python3 - "$n" <<'PY'
import http.client, json, sys, time
n = int(sys.argv[1])
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", 18977, timeout=30); c.request("GET", "/healthz"); c.getresponse().read(); break
    except OSError:
        time.sleep(0.1)
h = {"Authorization": "Bearer profile_admin_token_0123456789", "Content-Type": "application/json"}
def post(path, body):
    c.request("POST", path, json.dumps(body), h); r = c.getresponse(); r.read(); return r.status
assert post("/api/v1/workspaces", {"name": "prof"}) == 201
assert post("/api/v1/workspaces/prof/models", {"name": "m"}) == 201
t = time.time()
for i in range(n):
    assert post("/api/v1/workspaces/prof/models/m/versions", {"version": f"1.0.{i}"}) == 201
print(f"{n} creates under callgrind in {time.time() - t:.1f} s")
PY
kill -INT "$pid"; wait "$pid" || true
cp "$dir/callgrind.out" "${BERTH_PROFILE_OUT:-target/callgrind.out}"
callgrind_annotate --inclusive=yes "$dir/callgrind.out" 2>/dev/null | grep -E "berth::|sqlite3[A-Z_a-z]*(Checkpoint|Commit|Sync|Step|Prepare|Exec)|malloc|serde|reqwest|hyper::proto::h1::role" | head -60
