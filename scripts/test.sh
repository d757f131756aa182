#!/usr/bin/env bash
# Runs every test of Berth: unit tests, and the integration suite against SQLite and
# PostgreSQL. Installs or starts what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL: the conformance suite needs it (BERTH_TEST_DATABASE_URL, default below).
export BERTH_TEST_DATABASE_URL="${BERTH_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi

# Chromium: the browser suite drives Debian's headless chromium.
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

cargo test --all-targets -- "$@"
