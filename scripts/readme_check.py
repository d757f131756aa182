#!/usr/bin/env python3
"""Runs the README's walk-through and checks every sample output it shows.

Usage: python3 scripts/readme_check.py [--berth PATH] [--port N] [--receiver-port N]
                                       [--readme FILE] [--update]

The README marks what it runs with an HTML comment on the line before a fenced block:

  <!-- check: serve -->         the command that starts Berth (`cargo run --release --` is
                                replaced by --berth); run in the background with
                                BERTH_LISTEN=127.0.0.1:PORT, in a fresh directory
  <!-- check: serve-output -->  a block showing what that start printed on standard output
  <!-- check: run -->           a shell block, run in one shell session, in README order
  <!-- check: run retry -->     the same, run again (for up to 10 s) until its output matches:
                                for what Berth does after answering (deliveries)
  <!-- check: background -->    a shell command ending in `&`, run in the background; its
                                output is collected
  <!-- check: background-output -->  what the background command printed since the last such
                                block (waited for, up to 10 s)

A fenced block right after a `run` or `background` block (blank lines between at most, no
marker) is its expected output; a `run` block with none must print nothing. A line `…` alone
in an expected output stands for any number of lines.

Before comparing, both sides are normalised: UUIDs, RFC 3339 times, Unix times, tokens,
signing keys, signatures and durations become `…`, and the real ports become 8080 (Berth)
and 9000 (the receiver), so the README shows `…` where a value changes from run to run.

The commands run with the working directory a fresh temporary directory that holds
`examples/` (a link to the repository's) and Berth's data directory `berth-data/`;
`./target/release/berth` in a command is replaced by --berth. Network: loopback only.
A mismatch prints a diff and exits 1; --update writes the outputs it got into the README.

Needs bash, curl, jq and python3 (standard library only).
"""
import argparse
import difflib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = re.compile(r"^<!--\s*check:\s*([a-z -]+?)\s*-->\s*$")
FENCE = re.compile(r"^```")
WAIT = 10.0  # seconds, for `retry` and background output
STEP_TIMEOUT = 60.0  # seconds, for one block
PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}

NORMALISE = [
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "…"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)"), "…"),
    (re.compile(r'("\w+At"\s*:\s*)\d{9,}'), r"\1…"),
    (re.compile(r'("durationMs"\s*:\s*)\d+'), r"\1…"),
    (re.compile(r"\bberth_[A-Za-z0-9_-]{16,}"), "berth_…"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_…"),
    (re.compile(r"\bv1,[A-Za-z0-9+/=]{20,}"), "v1,…"),
]


class Block:
    """A fenced block of the README: its lines, where it is, and its marker."""

    def __init__(self, start, end, info, lines, marker):
        self.start = start  # index of the opening fence line
        self.end = end  # index of the closing fence line
        self.info = info
        self.lines = lines
        self.marker = marker  # e.g. ["run", "retry"], or [] without one
        self.expected = None  # for run/background: the output block that follows

    @property
    def text(self):
        return "\n".join(self.lines)


def parse(readme_lines):
    blocks = []
    i = 0
    while i < len(readme_lines):
        if FENCE.match(readme_lines[i]):
            start = i
            info = readme_lines[i][3:].strip()
            i += 1
            while i < len(readme_lines) and not FENCE.match(readme_lines[i]):
                i += 1
            if i == len(readme_lines):
                sys.exit(f"README line {start + 1}: a fenced block that never closes")
            marker = []
            j = start - 1
            while j >= 0 and readme_lines[j].strip() == "":
                j -= 1
            m = MARKER.match(readme_lines[j]) if j >= 0 else None
            if m:
                marker = m.group(1).split()
            blocks.append(Block(start, i, info, readme_lines[start + 1 : i], marker))
        i += 1
    known = {"serve", "serve-output", "run", "retry", "background", "background-output"}
    for b in blocks:
        bad = set(b.marker) - known
        if bad:
            sys.exit(f"README line {b.start + 1}: unknown check marker {sorted(bad)}")
    # An unmarked block right after a run/background block is its expected output.
    for prev, nxt in zip(blocks, blocks[1:]):
        if prev.marker and prev.marker[0] in ("run", "background") and not nxt.marker:
            between = readme_lines[prev.end + 1 : nxt.start]
            if all(line.strip() == "" for line in between):
                prev.expected = nxt
    return [b for b in blocks if b.marker]


def normalise(text, ports):
    for real, shown in ports:
        text = text.replace(f"127.0.0.1:{real}", f"127.0.0.1:{shown}")
    for pattern, repl in NORMALISE:
        text = pattern.sub(repl, text)
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n")) if text.strip() else ""


def matches(expected, actual):
    """True when `actual` equals `expected`, a line `…` in it standing for any lines."""
    exp = expected.split("\n") if expected else []
    act = actual.split("\n") if actual else []
    memo = {}

    def at(i, j):
        if (i, j) in memo:
            return memo[(i, j)]
        if i == len(exp):
            ok = j == len(act)
        elif exp[i] == "…":
            ok = any(at(i + 1, k) for k in range(j, len(act) + 1))
        else:
            ok = j < len(act) and exp[i] == act[j] and at(i + 1, j + 1)
        memo[(i, j)] = ok
        return ok

    return at(0, 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Shell:
    """One bash session: variables set by one block are there for the next."""

    def __init__(self, cwd, env):
        self.cwd = cwd
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.n = 0

    def run(self, script, timeout=STEP_TIMEOUT):
        """Runs `script` (stdin /dev/null); answers (exit status, output)."""
        self.n += 1
        path = os.path.join(self.cwd, f".step-{self.n}.sh")
        with open(path, "w") as f:
            f.write(script + "\n")
        sentinel = f"__readme_check_done_{self.n}__"
        self.proc.stdin.write(
            f'source {path} </dev/null; printf "\\n{sentinel} %s\\n" "$?"\n'.encode()
        )
        self.proc.stdin.flush()
        out = b""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            idx = out.find(f"\n{sentinel} ".encode())
            if idx >= 0 and out.endswith(b"\n"):
                rc = int(out[idx:].split()[1])
                return rc, out[:idx].decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0:
                return None, out.decode(errors="replace")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return None, out.decode(errors="replace")
                out += chunk

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


def substitute(cmd, args):
    cmd = cmd.replace("127.0.0.1:8080", f"127.0.0.1:{args.actual_port}")
    cmd = cmd.replace("127.0.0.1:9000", f"127.0.0.1:{args.receiver_port}")
    cmd = cmd.replace("receiver.py 9000", f"receiver.py {args.receiver_port}")
    cmd = cmd.replace("./target/release/berth", args.berth)
    return cmd


def start_server(block, args, cwd, env):
    cmd = block.text.strip()
    if "cargo run --release --" not in cmd:
        sys.exit(f"README line {block.start + 1}: the serve block must use `cargo run --release --`")
    cmd = cmd.replace("cargo run --release --", f'"{args.berth}"', 1)
    senv = dict(env, BERTH_LISTEN=f"127.0.0.1:{args.port}")
    out = open(os.path.join(cwd, ".serve.stdout"), "w+b")
    err = open(os.path.join(cwd, ".serve.stderr"), "w+b")
    proc = subprocess.Popen(
        ["bash", "-c", cmd], cwd=cwd, env=senv, stdout=out, stderr=err,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        err.seek(0)
        log = err.read().decode(errors="replace")
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log)
        if m:
            args.actual_port = int(m.group(1))
            return proc, out
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"berth serve did not start (README line {block.start + 1}):\n{log}")
        time.sleep(0.05)


def check(blocks, args, readme_lines):
    cwd = tempfile.mkdtemp(prefix="berth-readme-")
    os.symlink(os.path.join(REPO, "examples"), os.path.join(cwd, "examples"))
    # No BERTH_* setting of the caller's, and no proxy: every request stays on loopback.
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("BERTH_") and k.lower() not in PROXY_VARS
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    env["BERTH_LOG"] = "info"
    ports = []
    failures = []
    updates = {}  # block start → new lines
    server = None
    shell = Shell(cwd, env)
    bg_log = os.path.join(cwd, ".background.log")
    bg_seen = 0
    serve_outputs = []

    def compare(block, expected_block, actual):
        expected = normalise(expected_block.text if expected_block else "", ports)
        if matches(expected, actual):
            return
        where = expected_block or block
        diff = "\n".join(difflib.unified_diff(
            expected.split("\n") if expected else [], actual.split("\n") if actual else [],
            f"README.md line {where.start + 2} (expected)", "actual", lineterm="",
        ))
        failures.append(f"README.md line {block.start + 2}:\n{block.text}\n{diff}")
        if expected_block:
            updates[expected_block.start] = (expected_block, actual.split("\n"))

    try:
        for b in blocks:
            kind = b.marker[0]
            if kind == "serve":
                if server:
                    sys.exit(f"README line {b.start + 1}: a second serve block")
                server, server_out = start_server(b, args, cwd, env)
                ports[:] = [(args.actual_port, 8080), (args.receiver_port, 9000)]
            elif kind == "serve-output":
                serve_outputs.append(b)
            elif server is None:
                sys.exit(f"README line {b.start + 1}: a `{kind}` block before the serve block")
            elif kind == "run":
                cmd = substitute(b.text, args)
                deadline = time.monotonic() + (WAIT if "retry" in b.marker else 0)
                while True:
                    rc, out = shell.run(cmd)
                    actual = normalise(out, ports)
                    expected = normalise(b.expected.text if b.expected else "", ports)
                    if rc == 0 and matches(expected, actual) or time.monotonic() >= deadline:
                        break
                    time.sleep(0.1)
                if rc != 0:
                    failures.append(
                        f"README.md line {b.start + 2}: the command "
                        + ("timed out" if rc is None else f"exited with status {rc}")
                        + f":\n{b.text}\n--- its output:\n{out}"
                    )
                    break  # the steps after it depend on it
                compare(b, b.expected, actual)
            elif kind == "background":
                cmd = substitute(b.text, args).rstrip()
                if not cmd.endswith("&"):
                    sys.exit(f"README line {b.start + 1}: a background command must end with `&`")
                rc, out = shell.run(f"( {cmd[:-1]} ) </dev/null >>{bg_log} 2>&1 &")
                if rc != 0 or out.strip():
                    failures.append(f"README.md line {b.start + 2}: could not start:\n{out}")
                    break
                bg_seen = wait_background(b, b.expected, bg_log, bg_seen, ports, compare)
            elif kind == "background-output":
                bg_seen = wait_background(b, b, bg_log, bg_seen, ports, compare)
        if server:
            server_out.seek(0)
            printed = normalise(server_out.read().decode(errors="replace"), ports)
            for b in serve_outputs:
                compare(b, b, printed)
    finally:
        shell.close()
        if server:
            try:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                server.kill()
        if not args.keep:
            shutil.rmtree(cwd, ignore_errors=True)
        else:
            print(f"kept {cwd}", file=sys.stderr)

    if args.update and updates:
        for start in sorted(updates, reverse=True):
            block, lines = updates[start]
            readme_lines[block.start + 1 : block.end] = lines
        with open(args.readme, "w") as f:
            f.write("\n".join(readme_lines) + "\n")
        print(f"updated {len(updates)} sample(s) in {args.readme}", file=sys.stderr)
    return failures, len(updates)


def wait_background(block, expected_block, log, seen, ports, compare):
    """Waits until the background output since `seen` matches; answers the new offset."""
    expected = normalise(expected_block.text if expected_block else "", ports)
    deadline = time.monotonic() + WAIT
    while True:
        try:
            with open(log, "rb") as f:
                f.seek(seen)
                data = f.read()
        except FileNotFoundError:
            # The background command's shell has not opened its log yet.
            data = b""
        # Only whole lines count.
        whole = data[: data.rfind(b"\n") + 1]
        actual = normalise(whole.decode(errors="replace"), ports)
        if matches(expected, actual) or time.monotonic() >= deadline:
            compare(block, expected_block, actual)
            return seen + len(whole)
        time.sleep(0.05)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--berth", default=os.path.join(REPO, "target", "debug", "berth"),
                   help="the berth binary (default: target/debug/berth)")
    p.add_argument("--port", type=int, default=0,
                   help="Berth's port on 127.0.0.1 (default: 0, a free one)")
    p.add_argument("--receiver-port", type=int, default=0,
                   help="the receiver's port on 127.0.0.1 (default: a free one)")
    p.add_argument("--readme", default=os.path.join(REPO, "README.md"))
    p.add_argument("--update", action="store_true",
                   help="write the outputs got into the README instead of failing")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args()
    args.berth = os.path.abspath(args.berth)
    if not os.access(args.berth, os.X_OK):
        sys.exit(f"readme-check: no berth binary at {args.berth} (build it, or pass --berth)")
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            sys.exit(f"readme-check: `{tool}` is missing; the README's commands need it")
    if args.receiver_port == 0:
        args.receiver_port = free_port()
    args.actual_port = args.port
    with open(args.readme) as f:
        readme_lines = f.read().split("\n")
    if readme_lines and readme_lines[-1] == "":
        readme_lines.pop()
    blocks = parse(readme_lines)
    if not any(b.marker[0] == "serve" for b in blocks):
        sys.exit("readme-check: the README marks no serve block")
    started = time.monotonic()
    failures, updated = check(blocks, args, readme_lines)
    runs = sum(1 for b in blocks if b.marker[0] != "serve")
    took = time.monotonic() - started
    if failures:
        print("\n\n".join(failures), file=sys.stderr)
        print(f"\nreadme-check: {len(failures)} of {runs} checked blocks differ from the README "
              f"({took:.1f} s)" + (f"; {updated} updated in the README" if args.update else ""),
              file=sys.stderr)
        sys.exit(0 if args.update and updated == len(failures) else 1)
    print(f"readme-check: {runs} blocks of the README ran and matched ({took:.1f} s)")


if __name__ == "__main__":
    main()
