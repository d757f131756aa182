#!/usr/bin/env bash
# Runs every test of Berth: unit tests, and the integration suite against SQLite and
# PostgreSQL (with the schema fuzzing). Installs or starts what the tests need when it is
# missing.
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

# curl and jq: the README's walk-through uses them, and tests/it/readme.rs runs it.
if ! command -v curl >/dev/null 2>&1 || ! command -v jq >/dev/null 2>&1; then
  echo "installing curl and jq"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq curl jq >/dev/null
fi

# Schemathesis: the fuzz test (tests/it/fuzz.rs) runs it from this venv, pinned. A missing
# one fails that test; it is never skipped.
ST_VERSION=4.32.5
ST_VENV=target/schemathesis-venv
if ! "$ST_VENV/bin/st" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
  echo "installing schemathesis $ST_VERSION into $ST_VENV"
  mkdir -p target
  if ! python3 -m venv --clear "$ST_VENV" >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
    python3 -m venv --clear "$ST_VENV"
  fi
  "$ST_VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
fi
export BERTH_SCHEMATHESIS="$PWD/$ST_VENV/bin/st"

cargo test --all-targets -- "$@"
