"""Runs schemathesis against the console's JSON API of a real `keygate serve`, logged in.

Called by scripts/schemathesis inside its virtualenv. It:

1. starts `keygate serve` (KEYGATE_BIN, default target/debug/keygate) on a free loopback port, in
   a fresh temporary data directory with a fresh master key file;
2. creates two accounts through the real CLI: `owner`, whose session schemathesis uses, and
   `spare`, whose sessions feed `POST /logout` (see hooks.py);
3. logs `owner` in through the API (pre-session cookie and CSRF token, then the session cookie),
   enrolls TOTP 2FA and confirms it with a code computed here, steps up with a recovery code (so
   key changes that need a step-up can succeed while the run lasts), creates an HMAC key, takes a
   faucet deposit and places a resting order through the Binance API with that key, so that every
   list the API returns has something in it to check against the document;
4. writes what the hooks need to a JSON file and runs `schemathesis run` with every check, with
   the config file beside this one (which says which checks are narrowed where, and why).

The exit code is schemathesis's: non-zero on any failure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
API = "/api/console/v1"
PASSWORD = "schemathesis-password"
# Sessions of the `spare` account that `POST /logout` may end (one per logout case that needs one).
SPARE_SESSIONS = 25


def keygate_bin() -> Path:
    p = Path(os.environ.get("KEYGATE_BIN", "target/debug/keygate"))
    return p if p.is_absolute() else REPO / p


def totp(secret_b32: str, at: float) -> str:
    """RFC 6238 (SHA-1, 6 digits, 30 s), as every authenticator app computes it."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[off : off + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


class Server:
    """A running `keygate serve` and its CLI."""

    def __init__(self, root: Path):
        self.root = root
        self.env = dict(os.environ)
        self.env["KEYGATE_DATA_DIR"] = str(root / "data")
        self.env["KEYGATE_MASTER_KEY_FILE"] = str(root / "master.key")
        self.env.pop("KEYGATE_DATABASE_URL", None)
        self.env.setdefault("RUST_LOG", "warn")
        self.log = root / "serve.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(keygate_bin()), "serve", "--listen", "127.0.0.1:0", "--signup", "open"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=open(self.log, "wb"),  # noqa: SIM115 - lives as long as the process
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if select.select([self.proc.stdout], [], [], 0.5)[0]:
                m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.proc.stdout.readline())
                if m:
                    self.url = m.group(1)
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"keygate serve exited: {self.log.read_text()}")
        raise RuntimeError("keygate serve did not print its address within 30 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cli(self, *args: str, stdin: str | None = None) -> dict:
        r = subprocess.run(
            [str(keygate_bin()), *args, "--json"], env=self.env, input=stdin, capture_output=True, text=True, timeout=60
        )
        if r.returncode != 0:
            raise RuntimeError(f"keygate {' '.join(args)} failed: {r.stderr.strip()}")
        return json.loads(r.stdout)


class Console:
    """One browser's worth of the console API: its cookies and its CSRF token."""

    def __init__(self, url: str):
        self.url = url
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def call(self, method: str, path: str, body: dict | None = None) -> dict | list:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if method != "GET":
            headers["X-CSRF-Token"] = self.csrf
        req = urllib.request.Request(self.url + API + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                for c in r.headers.get_all("Set-Cookie") or []:
                    name, _, rest = c.partition("=")
                    self.cookies[name] = rest.split(";", 1)[0]
                answer = json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}") from None
        if isinstance(answer, dict) and "csrf_token" in answer:
            self.csrf = answer["csrf_token"]
        return answer

    def login(self, name: str) -> dict:
        self.call("GET", "/session")
        return self.call("POST", "/login", {"name": name, "password": PASSWORD})


def signed_order(url: str, key: dict) -> dict:
    """A resting LIMIT BUY far below the market, through the Binance API, signed with HMAC."""
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.02",
        "price": "1000",
        "timestamp": str(int(time.time() * 1000)),
    }
    query = urllib.parse.urlencode(params)
    sig = hmac.new(key["secret"].encode(), query.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(
        f"{url}/api/v3/order?{query}&signature={sig}", method="POST", headers={"X-MBX-APIKEY": key["api_key"]}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"POST /api/v3/order: {e.code} {e.read().decode(errors='replace')}") from None


def prepare(server: Server) -> dict:
    for name in ("owner", "spare"):
        server.cli("accounts", "create", name, "--password-stdin", stdin=PASSWORD + "\n")
    owner = Console(server.url)
    owner.login("owner")
    secret = owner.call("POST", "/2fa/enroll")["secret"]
    recovery = owner.call("POST", "/2fa/confirm", {"code": totp(secret, time.time())})["recovery_codes"]
    session = owner.call("POST", "/step-up", {"code": recovery[0]})
    assert session["stepped_up_until"], session
    key = owner.call("POST", "/keys", {"label": "schemathesis", "permissions": ["read", "trade"]})
    owner.call("POST", "/wallet/faucet", {"asset": "USDT"})
    order = signed_order(server.url, key)
    assert order["status"] == "NEW", order
    spare = []
    for _ in range(SPARE_SESSIONS):
        c = Console(server.url)
        c.login("spare")
        spare.append({"cookies": c.cookies, "csrf": c.csrf})
    # An anonymous browser's pre-session cookie, for sign-up and login.
    anon = Console(server.url)
    anon.call("GET", "/session")
    return {
        "owner": {"cookies": owner.cookies, "csrf": owner.csrf},
        "anonymous": {"cookies": anon.cookies, "csrf": anon.csrf},
        "spare": spare,
        "key": key["api_key"],
    }


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="keygate-schemathesis-") as tmp:
        root = Path(tmp)
        server = Server(root)
        server.start()
        try:
            state = prepare(server)
            state_file = root / "state.json"
            state_file.write_text(json.dumps(state))
            env = dict(os.environ)
            env["KEYGATE_SCHEMATHESIS_STATE"] = str(state_file)
            env["SCHEMATHESIS_HOOKS"] = "hooks"
            env["PYTHONPATH"] = str(HERE)
            cmd = [
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "run",
                f"{server.url}{API}/openapi.json",
                "--url",
                server.url,
                *sys.argv[1:],
            ]
            print("schemathesis:", " ".join(cmd), flush=True)
            rc = subprocess.run(cmd, env=env, cwd=root).returncode
            if rc != 0:
                log = server.log.read_text(errors="replace")
                print(f"--- keygate serve log (last 4000 characters) ---\n{log[-4000:]}", file=sys.stderr)
            return rc
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
