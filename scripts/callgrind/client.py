"""Drives a server running under callgrind for scripts/count-instructions.

keygate mode (`client.py PORT N VALGRIND_PID OUT HMAC_KEY_JSON [ED25519_KEY_JSON ED25519_PEM]`):
sends N pings, N HMAC-signed account reads, N HMAC-signed `POST /api/v3/order/test` (a LIMIT buy)
and (with an Ed25519 key) N Ed25519-signed account reads, each phase twice, zeroing the counters before each phase and dumping them after it
(callgrind_control); prints the instructions per request of each phase and the functions whose
inclusive count per request differs most between the second ping and the second HMAC phase (the
first of each warms caches and lazily initialised state). Ed25519 signing needs Python's
`cryptography`; without it that phase is skipped.

ping-only mode (`client.py PORT N VALGRIND_PID OUT ping-only`): N pings, twice (keygate-bare-axum,
or keygate with rate limits on, where N signed reads would run out of weight).
"""

import base64
import hashlib
import hmac
import http.client
import json
import re
import subprocess
import sys
import time
import urllib.parse

port, n, pid, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rest = sys.argv[5:]
conn = http.client.HTTPConnection("127.0.0.1", port)


def get(path, headers=None, method="GET", body=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"client.py: {path} answered {r.status}: {body[:200]!r}")


def ping():
    get("/api/v3/ping")


def query():
    return f"omitZeroBalances=true&recvWindow=60000&timestamp={int(time.time() * 1_000_000)}"


ping_only = rest == ["ping-only"]
phases = [("ping", ping)]
if not ping_only:
    key = json.load(open(rest[0]))

    def account():
        q = query()
        sig = hmac.new(key["secret"].encode(), q.encode(), hashlib.sha256).hexdigest()
        get(f"/api/v3/account?{q}&signature={sig}", {"X-MBX-APIKEY": key["api_key"]})

    phases.append(("account", account))

    def order_test():
        q = ("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000&recvWindow=60000"
             f"&timestamp={int(time.time() * 1_000_000)}")
        sig = hmac.new(key["secret"].encode(), q.encode(), hashlib.sha256).hexdigest()
        # In the query string, as scripts/load-wrk sends it (keygate-presign).
        get(f"/api/v3/order/test?{q}&signature={sig}", {"X-MBX-APIKEY": key["api_key"]}, "POST")

    phases.append(("order", order_test))
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        load_pem_private_key = None
        print("client.py: Python's cryptography is not installed; the Ed25519 phase is skipped")
    if len(rest) == 3 and load_pem_private_key:
        ed_key = json.load(open(rest[1]))
        signer = load_pem_private_key(open(rest[2], "rb").read(), None)

        def ed25519():
            q = query()
            sig = urllib.parse.quote(base64.b64encode(signer.sign(q.encode())).decode(), safe="")
            get(f"/api/v3/account?{q}&signature={sig}", {"X-MBX-APIKEY": ed_key["api_key"]})

        phases.append(("ed25519", ed25519))

for _ in range(200):
    for _, call in phases:
        call()

dumps = []
for name, call in phases + phases:
    i = len(dumps) + 1
    subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True)
    for _ in range(n):
        call()
    subprocess.run(["callgrind_control", "-d", f"{name}{i}", pid], capture_output=True, check=True)
    dumps.append((name, f"{out}.{i}"))


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


results = [inclusive(path) for _, path in dumps]
print(f"instructions per request (N={n}{', pings only' if ping_only else ''}):")
for (name, _), (total, _) in zip(dumps, results):
    print(f"  {name:8} {total / n:10.0f}")
if ping_only:
    sys.exit(0)
second = dict(zip([name for name, _ in phases], results[len(phases):]))
ping_fns, account_fns = second["ping"][1], second["account"][1]
if "ed25519" in second:
    verify = max((c for f, c in second["ed25519"][1].items() if "verify_strict" in f), default=0) / n
    extra = (second["ed25519"][0] - second["ping"][0]) / n
    print(f"Ed25519 read over ping: {extra:.0f}; one verify_strict inside it: {verify:.0f} "
          f"(ratio {extra / verify:.2f}; the target is at most 1.2)" if verify else "")
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
