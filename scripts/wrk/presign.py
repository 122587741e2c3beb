"""Writes COUNT signed `GET /api/v3/account?omitZeroBalances=true` paths for wrk.

Each path has its own timestamp (now + i microseconds, which keygate accepts like Binance), so
every signature is new to the server's replay guard. They carry `recvWindow=10000`, as ccxt sends
by default, so they stay valid while wrk loads them and runs a round of a few seconds. Usage: presign.py DEMO_KEYS_JSON OUT_PATHS OUT_KEY COUNT
"""

import hashlib
import hmac
import json
import sys
import time

keys, out_paths, out_key, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
key = next(k for k in json.load(open(keys))["keys"] if k["label"] == "demo-read")
secret = key["secret"].encode()
base = int(time.time() * 1_000_000)
with open(out_paths, "w") as f:
    for i in range(count):
        q = f"omitZeroBalances=true&recvWindow=10000&timestamp={base + i}"
        sig = hmac.new(secret, q.encode(), hashlib.sha256).hexdigest()
        f.write(f"/api/v3/account?{q}&signature={sig}\n")
with open(out_key, "w") as f:
    f.write(key["api_key"] + "\n")
