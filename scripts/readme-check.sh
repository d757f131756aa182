#!/usr/bin/env bash
# Runs the README's walk-through against a fresh `berth serve` on loopback and checks that
# every sample output it shows is what the commands print (scripts/readme_check.py says how
# the README marks them). Arguments go to it: --berth PATH (default target/debug/berth),
# --port N, --receiver-port N, --update (write the outputs got into the README).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/readme_check.py "$@"
