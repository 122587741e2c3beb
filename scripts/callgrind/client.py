"""Drives a keygate server running under callgrind for scripts/count-instructions.

Sends N pings, then N signed account reads, twice over, zeroing the counters before each phase
and dumping them after it (callgrind_control), then prints instructions per request for each
phase and the functions whose inclusive count per request differs most between the second ping
and the second account phase (the first of each warms caches and lazily initialised state).
Usage: client.py PORT N VALGRIND_PID KEY_JSON CALLGRIND_OUT
"""

import hashlib
import hmac
import http.client
import json
import re
import subprocess
import sys
import time

port, n, pid, key_file, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
key = json.load(open(key_file))
conn = http.client.HTTPConnection("127.0.0.1", port)


def get(path, headers=None):
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"client.py: {path} answered {r.status}: {body[:200]!r}")


def ping():
    get("/api/v3/ping")


def account():
    q = f"omitZeroBalances=true&recvWindow=60000&timestamp={int(time.time() * 1_000_000)}"
    sig = hmac.new(key["secret"].encode(), q.encode(), hashlib.sha256).hexdigest()
    get(f"/api/v3/account?{q}&signature={sig}", {"X-MBX-APIKEY": key["api_key"]})


for _ in range(200):
    ping()
    account()

phases = [("ping", ping), ("account", account), ("ping", ping), ("account", account)]
for i, (name, call) in enumerate(phases, 1):
    subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True)
    for _ in range(n):
        call()
    subprocess.run(["callgrind_control", "-d", f"{name}{i}", pid], capture_output=True, check=True)


def inclusive(path):
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total, per_fn = 0, {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)", line)
        if not m:
            continue
        count = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in m.group(2):
            total = count
            continue
        name = re.sub(r" \[[^\]]*\]$", "", re.sub(r"^[^:]*\.(rs|c|S|h):", "", m.group(2)))
        # A function listed under several source files (inlining) keeps its largest count.
        per_fn[name] = max(per_fn.get(name, 0), count)
    return total, per_fn


results = [inclusive(f"{out}.{i}") for i in range(1, 5)]
print(f"instructions per request (N={n}):")
for (name, _), (total, _) in zip(phases, results):
    print(f"  {name:8} {total / n:10.0f}")
(_, ping_fns), (_, account_fns) = results[2], results[3]
names = sorted(set(ping_fns) | set(account_fns), key=lambda k: -abs(account_fns.get(k, 0) - ping_fns.get(k, 0)))
print("largest differences, inclusive, per request (ping, account, difference; recursive frames may count twice):")
shown = 0
for name in names:
    if not re.search(r"keygate|hyper::proto::h1::role|http::uri|httparse|sha2|replay", name):
        continue
    a, b = ping_fns.get(name, 0) / n, account_fns.get(name, 0) / n
    print(f"  {a:9.0f} {b:9.0f} {b - a:+9.0f}  {name[:110]}")
    shown += 1
    if shown == 25:
        break
