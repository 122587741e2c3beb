"""ccxt (`ccxt.binance`, sync) against keygate.

Pointing it at keygate: every entry of `urls['api']` is an absolute base URL; keep its path and
swap scheme and host. ccxt takes an Ed25519 private key as PEM text in `secret` (it tells Ed25519
from RSA by PEM length, <= 120 characters).
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
from decimal import Decimal

import ccxt
import pytest

from conftest import WITHDRAW_ADDRESS, WITHDRAWN, D, Observer, Refusal, assert_moved, early_in_window, fill_deltas

SPOT_ONLY = {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False, "fetchCurrencies": False}


def client(kg, key=None, secret=None, **options) -> ccxt.binance:
    """A ccxt.binance pointed at keygate. Default options unless some are given (the default
    load_markets() also asks for futures markets, margin pairs and coins: keygate serves those)."""
    cfg: dict = {"options": options, "timeout": 10000}
    if key is not None:
        cfg["apiKey"] = key.api_key
        cfg["secret"] = secret if secret is not None else (key.secret if key.kind == "hmac" else key.private_pem)
    ex = ccxt.binance(cfg)
    for name, url in list(ex.urls["api"].items()):
        if isinstance(url, str):
            ex.urls["api"][name] = kg.url + urllib.parse.urlsplit(url).path
    return ex


def fresh(kg, key, secret=None, **options) -> ccxt.binance:
    """A new instance whose load_markets() is one public request, so that the call under test is
    its first signed one (ccxt turns -2015 into DDoSProtection once an instance has authenticated,
    see test_repeated_2015_is_ddos_protection)."""
    return client(kg, key, secret, **{**SPOT_ONLY, **options})


def test_full_flow(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(
        account, key_kind, "read,trade,withdraw", ip=["127.0.0.1"], withdraw_addresses=[WITHDRAW_ADDRESS]
    )
    ex = client(keygate, key, adjustForTimeDifference=False)

    # Server time.
    assert abs(ex.fetch_time() - time.time() * 1000) < 5000

    # Markets: the default load_markets() (7 requests, signed ones included).
    markets = ex.load_markets()
    btc = markets["BTC/USDT"]
    assert (btc["id"], btc["base"], btc["quote"], btc["active"]) == ("BTCUSDT", "BTC", "USDT", True)
    assert btc["precision"]["price"] == 0.01 and btc["precision"]["amount"] == 0.00001
    assert btc["limits"]["cost"]["min"] == 5.0
    assert {"ETH/USDT", "ETH/BTC", "BNB/USDT"} <= set(markets)
    assert "USDT" in ex.currencies and ex.currencies["USDT"]["networks"]["TRC20"]["id"] == "TRX"

    # Ticker, order book, klines.
    ticker = ex.fetch_ticker("BTC/USDT")
    assert ticker["symbol"] == "BTC/USDT" and 0 < ticker["bid"] < ticker["ask"]
    tickers = ex.fetch_tickers(["BTC/USDT", "ETH/USDT"])
    assert set(tickers) == {"BTC/USDT", "ETH/USDT"}
    book = ex.fetch_order_book("BTC/USDT", 5)
    assert 0 < len(book["bids"]) <= 5 and 0 < len(book["asks"]) <= 5
    assert book["bids"][0][0] < book["asks"][0][0]
    assert isinstance(book["nonce"], int)

    # Balances.
    bal = ex.fetch_balance()
    assert bal["USDT"]["free"] == 10000.0 and bal["USDT"]["used"] == 0.0
    assert bal["ETH"]["total"] == 1.0
    assert bal.get("BTC", {}).get("total", 0) == 0

    # Limit order, far below the book: rests, locks its cost.
    before = obs.balances()
    limit = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000)
    assert limit["status"] == "open" and limit["filled"] == 0.0 and limit["amount"] == 0.001
    assert limit["clientOrderId"].startswith("x-")
    assert obs.free("USDT") == before["USDT"][0] - Decimal("40") and obs.locked("USDT") == Decimal("40")

    # Query, open orders.
    got = ex.fetch_order(limit["id"], "BTC/USDT")
    assert (got["id"], got["status"], got["price"], got["side"]) == (limit["id"], "open", 40000.0, "buy")
    by_client_id = ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": limit["clientOrderId"]})
    assert by_client_id["id"] == limit["id"]
    assert [o["id"] for o in ex.fetch_open_orders("BTC/USDT")] == [limit["id"]]

    # Cancel: the lock is released.
    canceled = ex.cancel_order(limit["id"], "BTC/USDT")
    assert canceled["id"] == limit["id"] and canceled["status"] == "canceled"
    assert ex.fetch_open_orders("BTC/USDT") == []
    assert obs.balances() == before
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order(limit["id"], "BTC/USDT")

    # Market order by quantity.
    before = obs.balances()
    market = ex.create_order("BTC/USDT", "market", "buy", 0.001)
    assert market["status"] == "closed" and market["filled"] == 0.001 and market["remaining"] == 0.0
    assert market["trades"] and market["fee"] is not None
    assert_moved(before, obs.balances(), fill_deltas(market["info"]))

    # Market order by quote amount.
    before = obs.balances()
    by_cost = ex.create_market_buy_order_with_cost("BTC/USDT", 20)
    assert by_cost["status"] == "closed" and by_cost["info"]["origQuoteOrderQty"] == "20.00000000"
    assert Decimal("19") < D(by_cost["info"]["cummulativeQuoteQty"]) <= Decimal("20")
    # ccxt reads the order's amount from origQty: it must be what was bought, not zero.
    assert by_cost["info"]["origQty"] == by_cost["info"]["executedQty"]
    assert by_cost["amount"] == by_cost["filled"] > 0
    assert_moved(before, obs.balances(), fill_deltas(by_cost["info"]))

    # All orders, my trades.
    orders = {o["id"]: o["status"] for o in ex.fetch_orders("BTC/USDT")}
    assert orders == {limit["id"]: "canceled", market["id"]: "closed", by_cost["id"]: "closed"}
    trades = ex.fetch_my_trades("BTC/USDT")
    assert {t["order"] for t in trades} == {market["id"], by_cost["id"]}
    assert sum(D(t["info"]["qty"]) for t in trades if t["order"] == market["id"]) == Decimal("0.001")
    assert all(t["side"] == "buy" and t["takerOrMaker"] == "taker" for t in trades)

    # The ticker and klines now show the trades above.
    assert ex.fetch_ticker("BTC/USDT")["last"] > 0
    ohlcv = ex.fetch_ohlcv("BTC/USDT", "1m", limit=3)
    # The trades are seconds old: in the last two candles, whichever minute began meanwhile.
    assert ohlcv and len(ohlcv[-1]) == 6 and sum(c[5] for c in ohlcv[-2:]) > 0

    # Deposit address and history.
    address = ex.fetch_deposit_address("USDT", {"network": "TRX"})
    assert address["currency"] == "USDT" and address["address"]
    deposits = ex.fetch_deposits("USDT")
    assert [(d["amount"], d["status"]) for d in deposits] == [(10000.0, "ok")]

    # Withdrawal and its history.
    before = obs.balances()
    w = ex.withdraw("USDT", 20, WITHDRAW_ADDRESS, params={"network": "TRX"})
    assert w["id"]
    assert_moved(before, obs.balances(), *WITHDRAWN("20"))
    withdrawals = ex.fetch_withdrawals("USDT")
    assert [x["id"] for x in withdrawals] == [w["id"]]
    assert withdrawals[0]["address"] == WITHDRAW_ADDRESS and withdrawals[0]["network"] == "TRC20"
    assert (withdrawals[0]["amount"], withdrawals[0]["fee"]["cost"]) == (20.0, 1.0)  # TRX network fee: 1 USDT

    # Test order: validated, nothing placed.
    snap = obs.snapshot()
    ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000, {"test": True})
    assert obs.snapshot() == snap
    with pytest.raises(ccxt.BadRequest):  # below minNotional, even as a test
        ex.create_order("BTC/USDT", "limit", "buy", 0.00001, 40000, {"test": True})


# ---- permission matrix ---------------------------------------------------------------------


def test_read_only_key_reads_everything_and_cannot_trade_or_withdraw(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read")
    ex = client(keygate, key)
    ex.load_markets()  # default: signed capital/config/getall and margin pairs included
    assert ex.fetch_balance()["USDT"]["free"] == 10000.0
    assert ex.fetch_open_orders("BTC/USDT") == []
    assert ex.fetch_orders("BTC/USDT") == []
    assert ex.fetch_my_trades("BTC/USDT") == []
    assert len(ex.fetch_deposits()) == 2
    assert ex.fetch_withdrawals() == []
    assert ex.fetch_deposit_address("USDT")["address"]

    for call in (
        lambda e: e.create_order("BTC/USDT", "limit", "buy", 0.001, 40000),
        lambda e: e.create_order("BTC/USDT", "market", "buy", 0.001),
        lambda e: e.create_order("BTC/USDT", "limit", "buy", 0.001, 40000, {"test": True}),
        lambda e: e.cancel_order("1", "BTC/USDT"),
        lambda e: e.withdraw("USDT", 20, WITHDRAW_ADDRESS, params={"network": "TRX"}),
    ):
        with Refusal(obs), pytest.raises(ccxt.AuthenticationError, match="-2015"):
            call(fresh(keygate, key))


def test_repeated_2015_is_ddos_protection(keygate, funded):
    """ccxt's own rule (reference G8): -2015 after a successful private call on the same instance
    is reported as a temporary ban. keygate answers the same -2015; the class is ccxt's choice."""
    account, obs = funded
    ex = fresh(keygate, keygate.key(account, "hmac", "read"))
    ex.fetch_balance()
    with Refusal(obs), pytest.raises(ccxt.DDoSProtection, match="-2015"):
        ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000)


def test_trading_key_cannot_withdraw(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade", ip=["127.0.0.1"], withdraw_addresses=[WITHDRAW_ADDRESS])
    ex = fresh(keygate, key)
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000)
    ex.cancel_order(order["id"], "BTC/USDT")
    with Refusal(obs), pytest.raises(ccxt.AuthenticationError, match="-2015"):
        fresh(keygate, key).withdraw("USDT", 20, WITHDRAW_ADDRESS, params={"network": "TRX"})


def test_key_from_disallowed_ip_is_refused(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade", ip=["10.0.0.0/8"])
    with Refusal(obs), pytest.raises(ccxt.AuthenticationError, match="-2015"):
        fresh(keygate, key).fetch_balance()
    with Refusal(obs), pytest.raises(ccxt.AuthenticationError, match="-2015"):
        fresh(keygate, key).create_order("BTC/USDT", "limit", "buy", 0.001, 40000)


def test_expired_key_is_refused(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.expiring_key(account, key_kind)
    assert fresh(keygate, key).fetch_balance()["USDT"]["free"] == 10000.0
    keygate.wait_expired(key)
    with Refusal(obs), pytest.raises(ccxt.AuthenticationError, match="-2015"):
        fresh(keygate, key).fetch_balance()


def test_revoked_key_is_refused(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade")
    ex = fresh(keygate, key)
    assert ex.fetch_balance()["USDT"]["free"] == 10000.0
    keygate.revoke(key)
    with Refusal(obs), pytest.raises(ccxt.AuthenticationError, match="-2015"):
        fresh(keygate, key).fetch_balance()
    with Refusal(obs), pytest.raises(ccxt.AuthenticationError, match="-2015"):
        fresh(keygate, key).create_order("BTC/USDT", "limit", "buy", 0.001, 40000)


def test_stale_timestamp_is_1021(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade")
    # A client clock 60 s behind: ccxt sends timestamp = now - timeDifference, recvWindow 10000.
    ex = fresh(keygate, key, timeDifference=60000)
    with Refusal(obs), pytest.raises(ccxt.InvalidNonce, match="-1021"):
        ex.fetch_balance()
    with Refusal(obs), pytest.raises(ccxt.InvalidNonce, match="-1021"):
        ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000)
    # The remedy ccxt offers: adjustForTimeDifference syncs with GET /api/v3/time.
    ex.options["timeDifference"] = 0
    ex.load_time_difference()
    assert abs(ex.options["timeDifference"]) < 5000
    assert ex.fetch_balance()["USDT"]["free"] == 10000.0


def test_wrong_secret_is_1022(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade")
    other = keygate.key(account, key_kind, "read,trade")  # a valid secret, of another key
    wrong = other.secret if key_kind == "hmac" else other.private_pem
    with Refusal(obs), pytest.raises(ccxt.AuthenticationError, match="-1022"):
        fresh(keygate, key, wrong).fetch_balance()
    with Refusal(obs), pytest.raises(ccxt.AuthenticationError, match="-1022"):
        fresh(keygate, key, wrong).create_order("BTC/USDT", "limit", "buy", 0.001, 40000)


def test_async_support_same_wire(keygate, funded):
    """ccxt.async_support sends the same requests (aiohttp instead of requests)."""
    import asyncio

    import ccxt.async_support as accxt

    account, _ = funded
    key = keygate.key(account, "ed25519", "read,trade")

    async def run():
        ex = accxt.binance({"apiKey": key.api_key, "secret": key.private_pem, "options": dict(SPOT_ONLY)})
        for name, url in list(ex.urls["api"].items()):
            if isinstance(url, str):
                ex.urls["api"][name] = keygate.url + urllib.parse.urlsplit(url).path
        try:
            bal = await ex.fetch_balance()
            order = await ex.create_order("ETH/USDT", "limit", "sell", 0.01, 9000)
            canceled = await ex.cancel_order(order["id"], "ETH/USDT")
            return bal, order, canceled
        finally:
            await ex.close()

    bal, order, canceled = asyncio.run(run())
    assert bal["ETH"]["free"] == 1.0
    assert order["status"] == "open" and canceled["status"] == "canceled"


def test_more_unified_calls(keygate, funded, key_kind):
    """Unified methods beyond the main flow: open orders without a symbol, cancel all, trading
    fees, since/limit filters, time-in-force variants, a caller's client order id, and a withdrawal
    `name` that ccxt sends raw (spaces and UTF-8 unencoded, reference G4)."""
    account, obs = funded
    key = keygate.key(
        account, key_kind, "read,trade,withdraw", ip=["127.0.0.1"], withdraw_addresses=[WITHDRAW_ADDRESS]
    )
    ex = client(keygate, key, warnOnFetchOpenOrdersWithoutSymbol=False)
    ex.load_markets()

    fees = ex.fetch_trading_fees()
    assert fees["BTC/USDT"]["maker"] == 0.001 and fees["BTC/USDT"]["taker"] == 0.001

    a = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000, {"clientOrderId": "my-order.1"})
    b = ex.create_order("ETH/USDT", "limit", "sell", 0.5, 9000, {"postOnly": True})
    assert a["clientOrderId"] == "my-order.1" and b["postOnly"] is True and b["info"]["type"] == "LIMIT_MAKER"
    assert sorted(o["id"] for o in ex.fetch_open_orders()) == sorted([a["id"], b["id"]])
    assert ex.fetch_order(None, "BTC/USDT", {"origClientOrderId": "my-order.1"})["id"] == a["id"]
    assert obs.locked("ETH") == Decimal("0.5") and obs.locked("USDT") == Decimal("40")
    canceled = ex.cancel_all_orders("ETH/USDT")
    assert [o["id"] for o in canceled] == [b["id"]]
    ex.cancel_order(a["id"], "BTC/USDT")
    assert ex.fetch_open_orders() == []
    assert obs.locked("ETH") == 0 and obs.locked("USDT") == 0

    # IOC away from the book expires; FOK priced below every ask expires unfilled; a FOK the
    # best bid covers fills.
    ioc = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40000, {"timeInForce": "IOC"})
    assert ioc["status"] == "expired" and ioc["filled"] == 0.0
    before = obs.balances()
    fok = ex.create_order("ETH/USDT", "limit", "buy", 0.5, 2999.5, {"timeInForce": "FOK"})
    assert (fok["status"], fok["filled"]) == ("expired", 0.0)
    assert obs.balances() == before
    fok = ex.create_order("ETH/USDT", "limit", "sell", 0.01, 1000, {"timeInForce": "FOK"})
    assert (fok["status"], fok["filled"]) == ("closed", 0.01)
    assert_moved(before, obs.balances(), fill_deltas(fok["info"], "ETH"))

    since = ex.milliseconds() - 60000
    sell = ex.create_order("ETH/USDT", "market", "sell", 0.01)
    assert sell["status"] == "closed"
    mine = ex.fetch_my_trades("ETH/USDT", since, 10)
    assert {t["order"] for t in mine} >= {sell["id"]} and all(t["timestamp"] >= since for t in mine)
    assert ex.fetch_ohlcv("ETH/USDT", "1m", since, 5)
    public = ex.fetch_trades("ETH/USDT", since)  # GET /api/v3/aggTrades
    assert public and sum(t["amount"] for t in public if t["timestamp"] >= sell["timestamp"]) >= 0.01
    assert public[-1]["side"] == "sell" and public[-1]["price"] == sell["trades"][-1]["price"]
    assert ex.fetch_status()["status"] == "ok"  # GET /sapi/v1/system/status
    assert len(ex.fetch_deposits("USDT", since - 3600_000, 10)) == 1

    before = obs.balances()
    w = ex.withdraw("USDT", 15, WITHDRAW_ADDRESS, params={"network": "TRX", "name": "My Wallet ü"})
    assert_moved(before, obs.balances(), *WITHDRAWN("15"))
    assert [x["id"] for x in ex.fetch_withdrawals("USDT", since, 10)] == [w["id"]]


def test_errors_map_to_ccxt_classes(keygate, funded):
    """Binance codes with Binance's HTTP statuses become ccxt's matching exception classes."""
    account, obs = funded
    ex = fresh(keygate, keygate.key(account, "hmac", "read,trade"))
    ex.load_markets()
    cases = (
        (ccxt.InsufficientFunds, lambda: ex.create_order("ETH/USDT", "limit", "sell", 5, 9000)),
        (ccxt.OrderNotFound, lambda: ex.fetch_order("99999999", "ETH/USDT")),
        (ccxt.OrderNotFound, lambda: ex.cancel_order("99999999", "ETH/USDT")),
        (ccxt.BadRequest, lambda: ex.create_order("ETH/USDT", "limit", "buy", 0.002, 1000)),  # -1013 minNotional
        (ccxt.BadSymbol, lambda: ex.fetch_order_book("NOPEUSDT")),
    )
    for cls, call in cases:
        with Refusal(obs), pytest.raises(cls):
            call()


def test_malformed_key_is_2014(keygate, funded):
    account, obs = funded
    key = dataclasses.replace(keygate.key(account, "hmac", "read,trade"), api_key="not-a-keygate-key")
    with Refusal(obs), pytest.raises(ccxt.AuthenticationError, match="-2014"):
        fresh(keygate, key).fetch_balance()


def test_rate_limits(weight_limited_keygate, order_limited_keygate):
    """Over the request weight: 429 -1003; over the order count: 429 -1015 and nothing placed.
    ccxt reports both HTTP 429s as DDoSProtection."""
    ex = client(weight_limited_keygate, enableRateLimit=False)
    with pytest.raises(ccxt.DDoSProtection, match="-1003"):
        for _ in range(30):  # exchangeInfo weighs 20 of the 200 a minute (a minute may turn meanwhile)
            ex.public_get_exchangeinfo()

    kg = order_limited_keygate
    account = kg.account({"USDT": "1000"})
    obs = Observer(kg, account)
    ex = fresh(kg, kg.key(account, "hmac", "read,trade"))
    ex.load_markets()
    early_in_window()  # the four orders fall in one 10-second window
    for price in (40000, 40001, 40002):
        assert ex.create_order("BTC/USDT", "limit", "buy", 0.001, price)["status"] == "open"
    with Refusal(obs), pytest.raises(ccxt.DDoSProtection, match="-1015"):
        ex.create_order("BTC/USDT", "limit", "buy", 0.001, 40003)
    assert len(ex.fetch_open_orders("BTC/USDT")) == 3


def test_a_fresh_demo_withdraws_at_once(tmp_path):
    """`serve --demo` sets the demo account's first console password at start; that once counted
    as a password change and locked every withdrawal through the demo for 24 h (-4016), from every
    client library. A first password is not a change: a fresh demo withdraws at once."""
    import re
    import select
    import subprocess

    from conftest import Keygate

    kg = Keygate(tmp_path)
    proc = subprocess.Popen(
        [str(kg.bin), "serve", "--demo", "--listen", "127.0.0.1:0"],
        env=kg.env,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "demo.log", "wb"),  # noqa: SIM115 - lives as long as the process
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not kg.url and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
                kg.url = m.group(1) if m else ""
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()
        assert kg.url, "the demo did not print its address"
        keys_file = tmp_path / "data" / "demo-keys.json"
        while not keys_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        # A withdraw key on the demo account, made by the operator (the CLI, through the demo's
        # admin socket), as a user who wants to try withdrawals would.
        k = kg.cli(
            "keys", "create", "--account", "demo", "--permissions", "read,withdraw",
            "--ip", "127.0.0.1", "--withdraw-address", WITHDRAW_ADDRESS,
        )
        key = dataclasses.make_dataclass("K", ["api_key", "secret", "kind"])(k["api_key"], k["secret"], "hmac")
        ex = fresh(kg, key)
        w = ex.withdraw("USDT", 20, WITHDRAW_ADDRESS, params={"network": "TRX"})
        assert w["id"]
        assert [x["id"] for x in ex.fetch_withdrawals("USDT")] == [w["id"]]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_freqtrade_style_bot_trades_on_a_fresh_living_market(living_keygate):
    """What freqtrade does on a fresh demo, with no other account trading: candles first (500,
    for its indicators), then a limit buy at the touch that fills (the simulated taker flow trades
    into it), then the coins sold back the same way. Before the market had history and a flow,
    the candles were empty and the order never filled."""
    kg = living_keygate
    name = kg.account({"USDT": "1000"})
    ex = fresh(kg, kg.key(name, "hmac", "read,trade"))
    ex.load_markets()
    candles = ex.fetch_ohlcv("BTC/USDT", "1m", limit=500)
    assert len(candles) == 500
    assert all(b[0] - a[0] == 60_000 for a, b in zip(candles, candles[1:])), "one candle a minute, no gap"
    assert all(c[5] > 0 for c in candles[:-1]), "every past minute traded"
    assert all(c[3] <= min(c[1], c[4]) and c[2] >= max(c[1], c[4]) for c in candles)

    def filled(order: dict, side: str) -> dict:
        deadline = time.monotonic() + 120
        while (o := ex.fetch_order(order["id"], "BTC/USDT"))["status"] != "closed":
            assert o["status"] == "open", o
            assert time.monotonic() < deadline, f"the {side} at the touch did not fill in 120 s: {o}"
            time.sleep(0.5)
        return o

    bid = ex.fetch_order_book("BTC/USDT", 5)["bids"][0][0]
    buy = filled(ex.create_order("BTC/USDT", "limit", "buy", 0.001, bid), "buy")
    assert buy["filled"] == 0.001 and buy["average"] == bid
    mine = [t for t in ex.fetch_my_trades("BTC/USDT") if t["order"] == buy["id"]]
    assert mine and all(t["takerOrMaker"] == "maker" and t["fee"]["currency"] == "BTC" for t in mine)
    # 0.1 % maker fee, taken from the BTC bought.
    assert sum(D(t["info"]["commission"]) for t in mine) == Decimal("0.00000100")

    btc = ex.fetch_balance()["free"]["BTC"]
    qty = float(ex.amount_to_precision("BTC/USDT", btc))
    ask = ex.fetch_order_book("BTC/USDT", 5)["asks"][0][0]
    sell = filled(ex.create_order("BTC/USDT", "limit", "sell", qty, ask), "sell")
    assert sell["filled"] == qty
    assert ex.fetch_balance()["free"]["BTC"] < 0.00001, "all but the dust below one step was sold"
