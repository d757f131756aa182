#!/usr/bin/env bash
# Compares two builds of Berth with `berth bench`, alternately in one sitting:
#
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY [RUNS] [BENCH ARGS...]
#
# runs OLD, NEW, OLD, NEW, … (RUNS of each, default 5), each `berth bench` starting its own
# server from its own binary with the same BENCH ARGS (e.g. `--only 1,3`, or
# `--database-url …`), then prints each scenario's figure per run and the median over the
# pairs of NEW ÷ OLD (pairing each NEW run with the OLD run just before it keeps the ratio
# meaningful when the machine's speed drifts). It reads the JSON each run writes, only
# fields that builds before the ratios already wrote, so OLD may be an older build; figures
# that only NEW has are printed for NEW. It judges nothing.
#
# Example: keep the old build before rebuilding, then compare.
#   cp target/release/berth /tmp/berth-old && cargo build --release
#   scripts/bench-ab.sh /tmp/berth-old target/release/berth 5 --only 1,3
#
# Needs python3. The runs' JSON and output stay in the directory printed first.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
old=$1
new=$2
shift 2
runs=5
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
    runs=$1
    shift
fi
for bin in "$old" "$new"; do
    if [ ! -x "$bin" ]; then
        echo "bench-ab: $bin is not an executable" >&2
        exit 2
    fi
done
command -v python3 >/dev/null || { echo "bench-ab: needs python3" >&2; exit 2; }

out=$(mktemp -d "${TMPDIR:-/tmp}/bench-ab.XXXXXX")
echo "bench-ab: OLD=$old NEW=$new, $runs runs of each, bench args: ${*:-(none)}"
echo "bench-ab: JSON and output in $out"

for i in $(seq 1 "$runs"); do
    for side in old new; do
        if [ "$side" = old ]; then bin=$old; else bin=$new; fi
        echo "bench-ab: run $i, $side…" >&2
        # Each bench writes its JSON in its own directory; a failed run leaves none and
        # drops out of the pairs.
        if ! "$bin" bench --json "$out/$side-$i.json" "$@" >"$out/$side-$i.txt" 2>&1; then
            echo "bench-ab: run $i of $side failed (see $out/$side-$i.txt)" >&2
            rm -f "$out/$side-$i.json"
        fi
    done
done

python3 - "$out" "$runs" <<'PY'
import json, os, statistics, sys

out, runs = sys.argv[1], int(sys.argv[2])

def load(side, i):
    path = os.path.join(out, f"{side}-{i}.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def writes(r, c, key):
    for w in r.get("registry_writes") or []:
        if w.get("concurrency") == c:
            return w["per_second"] if key == "rate" else w["latency"][key]
    return None

def latency(r, field, key):
    l = r.get(field) or {}
    return l.get(key) if l.get("count") else None

def iso_delta(r):
    a, b = latency(r, "isolation_healthy_latency", "p99_ms"), latency(r, "delivery_latency", "p99_ms")
    return None if a is None or b is None else a - b

def positive(x):
    return x if isinstance(x, (int, float)) and x > 0 else None

def ratio(r, key):
    v = (r.get("ratios") or {}).get(key)
    return v

# (name, higher is better?, how to read it from one run's JSON)
FIGURES = [
    ("1. creates/s, concurrency 1", True, lambda r: positive(writes(r, 1, "rate"))),
    ("1. p99 ms, concurrency 1", False, lambda r: writes(r, 1, "p99_ms")),
    ("1. creates/s, concurrency 16", True, lambda r: positive(writes(r, 16, "rate"))),
    ("1. p99 ms, concurrency 16", False, lambda r: writes(r, 16, "p99_ms")),
    ("2. latency p50 ms", False, lambda r: latency(r, "delivery_latency", "p50_ms")),
    ("2. latency p99 ms", False, lambda r: latency(r, "delivery_latency", "p99_ms")),
    ("3. deliveries/s", True, lambda r: positive(r.get("delivery_throughput_per_second"))),
    ("3. Berth CPU µs a delivery", False, lambda r: positive(r.get("delivery_throughput_berth_cpu_us_per_delivery"))),
    ("4. isolation p99 ms", False, lambda r: latency(r, "isolation_healthy_latency", "p99_ms")),
    ("4. isolation p99 − 2. p99, ms", False, iso_delta),
    ("6. peak RSS MB", False, lambda r: positive(r.get("peak_rss_mb"))),
    ("6. database MB", False, lambda r: positive(r.get("database_mb"))),
    ("ratio: creates ÷ floor, c1", True, lambda r: ratio(r, "creates_to_floor_c1")),
    ("ratio: creates ÷ floor, c16", True, lambda r: ratio(r, "creates_to_floor_c16")),
    ("ratio: PostgreSQL ÷ SQLite deliveries", True, lambda r: ratio(r, "postgres_to_sqlite_deliveries")),
]

old = [load("old", i) for i in range(1, runs + 1)]
new = [load("new", i) for i in range(1, runs + 1)]
backends = {r.get("backend") for r in old + new if r}
print(f"\nbackend: {', '.join(sorted(b for b in backends if b)) or '?'}; "
      f"runs that wrote figures: OLD {sum(r is not None for r in old)}, NEW {sum(r is not None for r in new)}")

def fmt(x):
    if x is None:
        return "-"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}"

head = ["figure"] + [f"{s}{i}" for i in range(1, runs + 1) for s in ("O", "N")] + ["median N÷O", "better"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for name, higher, read in FIGURES:
    pairs, cells = [], []
    for o, n in zip(old, new):
        vo = read(o) if o else None
        vn = read(n) if n else None
        cells += [fmt(vo), fmt(vn)]
        if vo is not None and vn is not None and vo != 0:
            pairs.append(vn / vo)
    if all(c == "-" for c in cells):
        continue
    med = f"{statistics.median(pairs):.3f} ({len(pairs)} pairs)" if pairs else "-"
    # A difference can change sign: its ratio means little; read its runs instead.
    if name.startswith("4. isolation p99 −"):
        med = "-"
    print("| " + " | ".join([name] + cells + [med, "higher" if higher else "lower"]) + " |")
print("\nO = OLD, N = NEW, run by run in the order they ran (O1 N1 O2 N2 …); "
      "median N÷O is the median over the pairs of NEW's figure ÷ OLD's.")
PY
