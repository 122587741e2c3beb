"""Shared fixtures of the client compatibility suite.

The suite builds nothing: it runs the keygate binary named by KEYGATE_BIN (default
target/debug/keygate, which scripts/compat builds first), in a fresh temporary data directory with
a fresh master key file. Accounts, keys and deposits are made through the real CLI; while the
server runs, the CLI reaches it through its admin socket.

Nothing here imports a client library: every family's tests run in their own virtualenv, and the
`Observer` below reads balances and orders with its own stdlib-only signer, so that what a client
claims happened can be checked independently of that client.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "compat-suite-password"
# The withdrawal address every withdraw-capable key allows (a TRON-style address for USDT/TRX).
WITHDRAW_ADDRESS = "TXkeygateCompatSuiteAddr0000000001"
_names = itertools.count(1)


def keygate_bin() -> Path:
    """The binary under test: KEYGATE_BIN, relative paths taken from the repository root."""
    p = Path(os.environ.get("KEYGATE_BIN", "target/debug/keygate"))
    if not p.is_absolute():
        p = REPO / p
    if not p.is_file():
        pytest.exit(f"keygate binary not found at {p}; run scripts/compat (it builds it) or set KEYGATE_BIN", 2)
    return p


@dataclass
class Key:
    """An API key as a client library needs it."""

    api_key: str
    kind: str  # "hmac", "ed25519" or "rsa"
    secret: str | None = None  # HMAC secret
    private_pem: str | None = None  # Ed25519 or RSA PKCS#8 PEM (LF line endings)
    account: str = ""
    expires_at: int | None = None  # ms since the epoch


class Keygate:
    """A running `keygate serve` and its CLI."""

    def __init__(
        self,
        root: Path,
        rate_limits: str = "",
        liquidity: bool = False,
        market: tuple[str, ...] = ("--market-flow", "off"),
        extra_args: tuple[str, ...] = (),
    ):
        self.root = root
        self.extra_args = list(extra_args)
        self.rate_limits = rate_limits
        self.liquidity = liquidity
        # The simulated market's options. Off by default: with no taker flow, the suite's own
        # orders (and the static liquidity below) are the only ones that trade, so fills,
        # prices and refusals are the same on every run.
        self.market = market
        self.bin = keygate_bin()
        self.env = dict(os.environ)
        self.env["KEYGATE_DATA_DIR"] = str(root / "data")
        self.env["KEYGATE_MASTER_KEY_FILE"] = str(root / "master.key")
        self.env.pop("KEYGATE_DATABASE_URL", None)
        self.env.setdefault("RUST_LOG", "warn")
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log = root / "serve.log"
        # Makes an RSA key pair (private PKCS#8 PEM, public SPKI PEM): set per test module from the
        # family's own crypto library, since this file imports none.
        self.rsa_pair = None

    def start(self) -> None:
        """Starts the server on a free port, with the market maker, and waits for its address."""
        limits = self.root / "rate-limits.toml"
        limits.write_text(self.rate_limits)
        self.proc = subprocess.Popen(
            [
                str(self.bin),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--market-maker",
                *self.market,
                "--rate-limits-config",
                str(limits),
                *self.extra_args,
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=open(self.log, "ab"),  # noqa: SIM115 - lives as long as the process; appended across restarts
            text=True,
        )
        deadline = time.monotonic() + 30
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
                if m:
                    self.url = m.group(1)
                    break
            if self.proc.poll() is not None:
                raise RuntimeError(f"keygate serve exited: {self.log.read_text()}")
        else:
            raise RuntimeError("keygate serve did not print its address within 30 s")
        # The market maker quotes from its first ticks; wait until every book has both sides.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            books = [self.public("/api/v3/depth", symbol=s, limit=5) for s in ("BTCUSDT", "ETHUSDT", "ETHBTC", "BNBUSDT")]
            if all(b["bids"] and b["asks"] for b in books):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("the market maker did not quote every market within 30 s")
        if self.liquidity:
            self.seed_liquidity()

    # Resting orders one tick either side of each market's reference price, deep enough for the
    # whole suite. The market maker's book is never empty on a side (it requotes in one engine
    # batch), but it moves with its walk (in time, from the end of the market's history). These orders keep a best bid and ask in place throughout
    # (its LIMIT_MAKER quotes never take them), so fills, prices and refusals are the same on every
    # run.
    LIQUIDITY = (
        ("BTCUSDT", "59999.99", "60000.01", "1"),
        ("ETHUSDT", "2999.99", "3000.01", "20"),
        ("ETHBTC", "0.04999", "0.05001", "20"),
        ("BNBUSDT", "599.99", "600.01", "50"),
    )

    def seed_liquidity(self) -> None:
        name = self.account({"BTC": "5", "ETH": "100", "BNB": "100", "USDT": "1000000"})
        key = self.key(name, "hmac", "read,trade")
        for symbol, bid, ask, qty in self.LIQUIDITY:
            for side, price in (("BUY", bid), ("SELL", ask)):
                order = signed(
                    self.url,
                    key,
                    "POST",
                    "/api/v3/order",
                    symbol=symbol,
                    side=side,
                    type="LIMIT",
                    timeInForce="GTC",
                    quantity=qty,
                    price=price,
                )
                assert order["status"] in ("NEW", "PARTIALLY_FILLED"), order

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cli(self, *args: str, stdin: str | None = None) -> dict:
        """Runs `keygate ARGS --json` and returns the parsed JSON answer."""
        r = subprocess.run(
            [str(self.bin), *args, "--json"],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode != 0:
            raise RuntimeError(f"keygate {' '.join(args)} failed: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def public(self, path: str, **params) -> dict | list:
        q = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=10) as r:
            return json.loads(r.read())

    # ---- sandbox set-up through the real CLI ----------------------------------------------

    def account(self, deposits: dict[str, str] | None = None) -> str:
        """A new account, funded with `deposits` ({asset: amount})."""
        name = f"compat-{next(_names)}"
        self.cli("accounts", "create", name, "--password-stdin", stdin=PASSWORD + "\n")
        for asset, amount in (deposits or {}).items():
            self.cli("deposit", "--account", name, "--asset", asset, "--amount", amount)
        return name

    def key(
        self,
        account: str,
        kind: str = "hmac",
        permissions: str = "read",
        ip: list[str] | None = None,
        expires_in: int | None = None,
        withdraw_addresses: list[str] | None = None,
    ) -> Key:
        """Creates a key with `keygate keys create`; Ed25519 pairs come from `keygate keys keygen`,
        RSA pairs from the test module's `rsa_pair` fixture."""
        args = ["keys", "create", "--account", account, "--permissions", permissions, "--label", "compat"]
        private_pem = None
        if kind == "ed25519":
            out = self.root / f"ed25519-{next(_names)}.pem"
            self.keygen(out)
            private_pem = out.read_text()
            args += ["--ed25519-public-key", f"{out}.pub"]
        elif kind == "rsa":
            assert self.rsa_pair, "this test module has no rsa_pair fixture"
            private_pem, public_pem = self.rsa_pair()
            out = self.root / f"rsa-{next(_names)}.pub.pem"
            out.write_text(public_pem)
            args += ["--rsa-public-key", str(out)]
        for cidr in ip or []:
            args += ["--ip", cidr]
        for addr in withdraw_addresses or []:
            args += ["--withdraw-address", addr]
        if expires_in is not None:
            # RFC 3339 in whole seconds, computed after any key generation: `expires_in` to
            # `expires_in`+1 seconds from now.
            at = math.ceil(time.time()) + expires_in
            args += ["--expires", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))]
        v = self.cli(*args)
        assert v["type"] == kind
        return Key(
            api_key=v["api_key"],
            kind=kind,
            secret=v.get("secret"),
            private_pem=private_pem,
            account=account,
            expires_at=v.get("expires_at"),
        )

    def keygen(self, out: Path) -> str:
        """`keygate keys keygen --out FILE` (prints text, not JSON); returns the private PEM."""
        r = subprocess.run(
            [str(self.bin), "keys", "keygen", "--out", str(out)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode != 0:
            raise RuntimeError(f"keygate keys keygen failed: {r.stderr.strip()}")
        return out.read_text()

    def revoke(self, key: Key) -> None:
        v = self.cli("keys", "revoke", key.api_key)
        assert v["status"] == "revoked", v

    def expiring_key(self, account: str, kind: str, seconds: int = 2) -> Key:
        """A read key that expires `seconds` (to `seconds`+1) from now."""
        return self.key(account, kind, expires_in=seconds)

    @staticmethod
    def wait_expired(key: Key) -> None:
        assert key.expires_at is not None
        delay = key.expires_at / 1000 - time.time() + 0.3
        if delay > 0:
            time.sleep(delay)


def signed(base_url: str, key: Key, method: str, path: str, **params) -> dict | list:
    """A Binance-signed request with an HMAC key, every parameter in the query string (stdlib only)."""
    params["timestamp"] = int(time.time() * 1000)
    q = urllib.parse.urlencode(params)
    assert key.secret
    sig = hmac.new(key.secret.encode(), q.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(
        f"{base_url}{path}?{q}&signature={sig}", method=method, headers={"X-MBX-APIKEY": key.api_key}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class Observer:
    """Reads an account through keygate's HTTP API with a read-only HMAC key and a stdlib signer,
    independent of the client library under test."""

    def __init__(self, kg: Keygate, account: str):
        self.kg = kg
        self.key = kg.key(account, "hmac", "read")

    def get(self, path: str, **params) -> dict | list:
        return signed(self.kg.url, self.key, "GET", path, **params)

    def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        """{asset: (free, locked)} for every asset the account holds."""
        acc = self.get("/api/v3/account")
        return {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"])) for b in acc["balances"]}

    def free(self, asset: str) -> Decimal:
        return self.balances().get(asset, (Decimal(0), Decimal(0)))[0]

    def locked(self, asset: str) -> Decimal:
        return self.balances().get(asset, (Decimal(0), Decimal(0)))[1]

    def snapshot(self) -> dict:
        """Everything a refused request must leave untouched."""
        return {
            "balances": self.balances(),
            "orders": {
                s: self.get("/api/v3/allOrders", symbol=s) for s in ("BTCUSDT", "ETHUSDT")
            },
            "withdrawals": self.get("/sapi/v1/capital/withdraw/history"),
        }


_FAILED_LOGS: list[list[str]] = []


def pytest_terminal_summary(terminalreporter):
    """After failures, the end of keygate's own log, for CI."""
    for tail in _FAILED_LOGS:
        terminalreporter.section("keygate serve log (last 60 lines)")
        for line in tail:
            terminalreporter.write_line(line)


# The suite's own bookkeeping (an observer snapshot before and after every refusal) costs far more
# request weight than the calls under test, all from 127.0.0.1: raise the per-IP weight limits;
# the per-account order limits stay Binance's. `limited_keygate` checks the limits themselves.
GENEROUS = """
[[request_weight]]
interval = "MINUTE"
interval_num = 1
limit = 1000000

[[raw_requests]]
interval = "MINUTE"
interval_num = 5
limit = 10000000
"""

# Tiny limits (no bans), one kind per server so they do not trip each other: what the clients
# make of -1003 and -1015.
TINY_WEIGHT = """
[[request_weight]]
interval = "MINUTE"
interval_num = 1
limit = 200

[ban]
after_refusals = 1000
"""
TINY_ORDERS = GENEROUS + """
[[orders]]
interval = "SECOND"
interval_num = 10
limit = 3
"""


@pytest.fixture(scope="session")
def weight_limited_keygate(request):
    """A second keygate allowing 200 request weight a minute per IP."""
    yield from _serve(request, TINY_WEIGHT)


@pytest.fixture(scope="session")
def order_limited_keygate(request):
    """A second keygate allowing 3 orders per 10 seconds per account."""
    yield from _serve(request, TINY_ORDERS)


@pytest.fixture(scope="session")
def keygate(request):
    yield from _serve(request, GENEROUS, liquidity=True)


@pytest.fixture(scope="session")
def living_keygate(request):
    """A keygate whose simulated market runs as the demo's does (history, the default taker
    flow) and where nobody else trades: what a bot meets on a fresh `serve --demo`."""
    yield from _serve(request, GENEROUS, market=("--market-seed", "7"))


def _serve(request, rate_limits: str, liquidity: bool = False, market: tuple[str, ...] = ("--market-flow", "off")):
    root = Path(tempfile.mkdtemp(prefix="keygate-compat-"))
    kg = Keygate(root, rate_limits, liquidity, market)
    try:
        kg.start()
        yield kg
    finally:
        kg.stop()
        if request.session.testsfailed and kg.log.exists():
            _FAILED_LOGS.append(kg.log.read_text(errors="replace").splitlines()[-60:])
        if os.environ.get("KEYGATE_COMPAT_KEEP"):
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def funded(keygate):
    """A fresh account holding 10000 USDT and 1 ETH, and an observer on it."""
    name = keygate.account({"USDT": "10000", "ETH": "1"})
    return name, Observer(keygate, name)


@pytest.fixture
def rsa_pair():
    """Makes RSA-2048 pairs (PKCS#8 private PEM, SPKI public PEM) with the crypto library the
    family already installs: `cryptography` (ccxt) or `pycryptodome` (the others)."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        def make() -> tuple[str, str]:
            k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            private = k.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            public = k.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            return private.decode(), public.decode()

    except ImportError:
        from Crypto.PublicKey import RSA

        def make() -> tuple[str, str]:
            k = RSA.generate(2048)
            return k.export_key(pkcs=8).decode(), k.public_key().export_key().decode()

    return make


@pytest.fixture(params=["hmac", "ed25519", "rsa"])
def key_kind(request, keygate):
    """Every key type keygate verifies; RSA pairs come from the module's `rsa_pair` fixture."""
    if request.param == "rsa":
        keygate.rsa_pair = request.getfixturevalue("rsa_pair")
    return request.param


class Refusal:
    """Asserts a refused call leaves balances, orders and withdrawals as they were."""

    def __init__(self, observer: Observer):
        self.observer = observer

    def __enter__(self):
        self.before = self.observer.snapshot()
        return self

    def __exit__(self, *exc):
        assert self.observer.snapshot() == self.before, "a refused request changed the account"
        return False


def early_in_window(seconds: int = 10, latest: float = 6.0) -> None:
    """Waits, if need be, until the current fixed `seconds` window (aligned as keygate aligns its
    rate-limit windows) has at least `seconds - latest` seconds left, so that a burst of requests
    all count in one window."""
    into = time.time() % seconds
    if into > latest:
        time.sleep(seconds - into + 0.1)


def D(x) -> Decimal:
    """A decimal from a wire string or number."""
    return Decimal(str(x))


def fill_deltas(order: dict, base: str = "BTC", quote: str = "USDT") -> dict[str, Decimal]:
    """What a filled order (Binance FULL response) must have done to the balances: base and quote
    moved by executedQty and cummulativeQuoteQty, minus each fill's commission in its asset."""
    executed, spent = D(order["executedQty"]), D(order["cummulativeQuoteQty"])
    sign = 1 if order["side"] == "BUY" else -1
    delta = {base: sign * executed, quote: -sign * spent}
    assert order["fills"], "a filled order lists its fills"
    assert sum(D(f["qty"]) for f in order["fills"]) == executed
    assert sum(D(f["qty"]) * D(f["price"]) for f in order["fills"]) == spent
    for f in order["fills"]:
        delta[f["commissionAsset"]] = delta.get(f["commissionAsset"], Decimal(0)) - D(f["commission"])
    return delta


def assert_moved(
    before: dict, after: dict, delta: dict[str, Decimal], locked: dict[str, Decimal] | None = None
) -> None:
    """Free balances moved by exactly `delta` and locked ones by `locked`; all others stayed."""
    zero = (Decimal(0), Decimal(0))
    locked = locked or {}
    for asset in set(before) | set(after) | set(delta) | set(locked):
        b, a = before.get(asset, zero), after.get(asset, zero)
        assert a[0] - b[0] == delta.get(asset, Decimal(0)), f"{asset}: {b} -> {a}, expected {delta}"
        assert a[1] - b[1] == locked.get(asset, Decimal(0)), f"{asset} locked: {b} -> {a}, expected {locked}"


def WITHDRAWN(amount: str) -> tuple[dict, dict]:
    """A withdrawal being processed: its amount leaves `free` and is held in `locked` until the
    sandbox completes it."""
    return {"USDT": -Decimal(amount)}, {"USDT": Decimal(amount)}
