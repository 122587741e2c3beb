"""binance-connector (`binance.spot.Spot`, deprecated by Binance but widely used) against keygate.

Pointing it at keygate: `Spot(api_key=..., api_secret=..., base_url=URL)`, or
`Spot(api_key=..., private_key=PEM_TEXT, base_url=URL)` for Ed25519. It sends every parameter,
signature included, in the query string (POST and DELETE too, with an empty body) and
`Content-Type: application/json` on every request.
"""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal

import binance.api
import pytest
from binance.error import ClientError
from binance.spot import Spot

from conftest import WITHDRAW_ADDRESS, WITHDRAWN, D, Observer, Refusal, assert_moved, early_in_window, fill_deltas


def client(kg, key, secret=None) -> Spot:
    if key.kind == "hmac":
        return Spot(api_key=key.api_key, api_secret=secret or key.secret, base_url=kg.url, timeout=10)
    return Spot(api_key=key.api_key, private_key=secret or key.private_pem, base_url=kg.url, timeout=10)


class refused:
    """Expects ClientError with this Binance code and HTTP status."""

    def __init__(self, code: int, status: int):
        self.code, self.status = code, status

    def __enter__(self):
        self.cm = pytest.raises(ClientError)
        self.info = self.cm.__enter__()
        return self.info

    def __exit__(self, *exc):
        handled = self.cm.__exit__(*exc)
        e = self.info.value
        assert (e.error_code, e.status_code) == (self.code, self.status), e.error_message
        return handled


def test_full_flow(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(
        account, key_kind, "read,trade,withdraw", ip=["127.0.0.1"], withdraw_addresses=[WITHDRAW_ADDRESS]
    )
    c = client(keygate, key)
    assert c.ping() == {}
    assert abs(c.time()["serverTime"] - time.time() * 1000) < 5000

    info = c.exchange_info(symbol="BTCUSDT")
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT"]
    both = c.exchange_info(symbols=["BTCUSDT", "ETHUSDT"])
    assert sorted(s["symbol"] for s in both["symbols"]) == ["BTCUSDT", "ETHUSDT"]

    assert D(c.ticker_price("BTCUSDT")["price"]) > 0
    t24 = c.ticker_24hr("BTCUSDT")
    assert t24["symbol"] == "BTCUSDT" and 0 < D(t24["bidPrice"]) < D(t24["askPrice"])
    bt = c.book_ticker("BTCUSDT")
    assert (bt["bidPrice"], bt["askPrice"]) == (t24["bidPrice"], t24["askPrice"])
    book = c.depth("BTCUSDT", limit=5)
    assert 0 < len(book["bids"]) <= 5 and book["bids"][0][0] == bt["bidPrice"]

    bal = {b["asset"]: b for b in c.account()["balances"]}
    assert (bal["USDT"]["free"], bal["USDT"]["locked"], bal["ETH"]["free"]) == (
        "10000.00000000",
        "0.00000000",
        "1.00000000",
    )

    # Limit order, query, open orders, cancel: all signed in the query string.
    before = obs.balances()
    limit = c.new_order("BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.001, price=40000)
    assert limit["status"] == "NEW" and limit["fills"] == []
    assert_moved(before, obs.balances(), {"USDT": Decimal("-40")}, {"USDT": Decimal("40")})
    got = c.get_order("BTCUSDT", orderId=limit["orderId"])
    assert (got["status"], got["clientOrderId"]) == ("NEW", limit["clientOrderId"])
    assert [o["orderId"] for o in c.get_open_orders("BTCUSDT")] == [limit["orderId"]]
    canceled = c.cancel_order("BTCUSDT", orderId=limit["orderId"])
    assert (canceled["status"], canceled["origClientOrderId"]) == ("CANCELED", limit["clientOrderId"])
    assert obs.balances() == before
    with refused(-2011, 400):
        c.cancel_order("BTCUSDT", orderId=limit["orderId"])
    with refused(-2013, 400):
        c.get_order("BTCUSDT", orderId=987654321)

    # Market by quantity and by quote amount.
    before = obs.balances()
    market = c.new_order("BTCUSDT", "BUY", "MARKET", quantity=0.001)
    assert (market["status"], market["executedQty"]) == ("FILLED", "0.00100000")
    assert_moved(before, obs.balances(), fill_deltas(market))
    before = obs.balances()
    by_quote = c.new_order("BTCUSDT", "BUY", "MARKET", quoteOrderQty=20)
    assert by_quote["status"] == "FILLED" and Decimal("19") < D(by_quote["cummulativeQuoteQty"]) <= 20
    assert_moved(before, obs.balances(), fill_deltas(by_quote))

    orders = {o["orderId"]: o["status"] for o in c.get_orders("BTCUSDT")}
    assert orders == {limit["orderId"]: "CANCELED", market["orderId"]: "FILLED", by_quote["orderId"]: "FILLED"}
    trades = c.my_trades("BTCUSDT")
    assert {t["orderId"] for t in trades} == {market["orderId"], by_quote["orderId"]}
    assert all(t["isBuyer"] and not t["isMaker"] for t in trades)
    klines = c.klines("BTCUSDT", "1m", limit=3)
    # The trades are seconds old: in the last two candles, whichever minute began meanwhile.
    assert klines and len(klines[-1]) == 12 and sum(D(k[5]) for k in klines[-2:]) > 0

    # Wallet.
    assert c.deposit_address("USDT", network="TRX")["address"]
    deposits = c.deposit_history(coin="USDT")
    assert [(d["amount"], d["status"]) for d in deposits] == [("10000.00000000", 1)]
    assert {x["coin"] for x in c.coin_info()} >= {"BTC", "USDT"}
    before = obs.balances()
    w = c.withdraw("USDT", 20, WITHDRAW_ADDRESS, network="TRX")
    assert set(w) == {"id"}
    assert_moved(before, obs.balances(), *WITHDRAWN("20"))
    history = c.withdraw_history(coin="USDT")
    assert [(h["id"], h["amount"], h["transactionFee"]) for h in history] == [(w["id"], "20.00000000", "1.00000000")]

    # Test order.
    snap = obs.snapshot()
    assert c.new_order_test("BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.001, price=40000) == {}
    assert obs.snapshot() == snap


def test_exponent_numbers_are_refused_as_binance_does(keygate, funded):
    """Reference G7: str(0.00001) is '1e-05'; Binance refuses exponent notation with -1100."""
    account, obs = funded
    c = client(keygate, keygate.key(account, "hmac", "read,trade"))
    with Refusal(obs), refused(-1100, 400):
        c.new_order("BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.00001, price=40000)


# ---- permission matrix ---------------------------------------------------------------------


def test_read_only_key_reads_everything_and_cannot_trade_or_withdraw(keygate, funded, key_kind):
    account, obs = funded
    c = client(keygate, keygate.key(account, key_kind, "read"))
    assert {b["asset"]: b["free"] for b in c.account()["balances"]}["USDT"] == "10000.00000000"
    assert c.get_open_orders("BTCUSDT") == []
    assert c.get_orders("BTCUSDT") == []
    assert c.my_trades("BTCUSDT") == []
    assert len(c.deposit_history()) == 2
    assert c.withdraw_history() == []
    assert c.deposit_address("USDT")["address"]
    for call in (
        lambda: c.new_order("BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.001, price=40000),
        lambda: c.new_order("BTCUSDT", "BUY", "MARKET", quoteOrderQty=20),
        lambda: c.new_order_test("BTCUSDT", "BUY", "MARKET", quantity=0.001),
        lambda: c.cancel_order("BTCUSDT", orderId=1),
        lambda: c.cancel_open_orders("BTCUSDT"),
        lambda: c.withdraw("USDT", 20, WITHDRAW_ADDRESS, network="TRX"),
    ):
        with Refusal(obs), refused(-2015, 401):
            call()


def test_trading_key_cannot_withdraw(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade", ip=["127.0.0.1"], withdraw_addresses=[WITHDRAW_ADDRESS])
    c = client(keygate, key)
    order = c.new_order("ETHUSDT", "SELL", "LIMIT", timeInForce="GTC", quantity=0.01, price=9000)
    c.cancel_order("ETHUSDT", orderId=order["orderId"])
    with Refusal(obs), refused(-2015, 401):
        c.withdraw("USDT", 20, WITHDRAW_ADDRESS, network="TRX")


def test_key_from_disallowed_ip_is_refused(keygate, funded, key_kind):
    account, obs = funded
    c = client(keygate, keygate.key(account, key_kind, "read,trade", ip=["10.0.0.0/8"]))
    with Refusal(obs), refused(-2015, 401):
        c.account()
    with Refusal(obs), refused(-2015, 401):
        c.new_order("BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.001, price=40000)


def test_expired_key_is_refused(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.expiring_key(account, key_kind)
    c = client(keygate, key)
    assert c.account()["canTrade"] is False
    keygate.wait_expired(key)
    with Refusal(obs), refused(-2015, 401):
        c.account()


def test_revoked_key_is_refused(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade")
    c = client(keygate, key)
    assert c.account()["canTrade"] is True
    keygate.revoke(key)
    with Refusal(obs), refused(-2015, 401):
        c.account()
    with Refusal(obs), refused(-2015, 401):
        c.new_order("BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.001, price=40000)


def test_get_then_cancel_in_one_millisecond(keygate, funded, key_kind, monkeypatch):
    # The connector's get-order-then-cancel with identical parameters in the same millisecond
    # carries one signature twice, to two endpoints; Binance accepts both. Pinning the clock makes
    # the coincidence certain; only a second cancel with that signature is a replay (-1022).
    account, obs = funded
    c = client(keygate, keygate.key(account, key_kind, "read,trade"))
    order = c.new_order("BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.001, price=40000)
    now = int(time.time() * 1000)
    monkeypatch.setattr(binance.api, "get_timestamp", lambda: now)
    assert c.get_order("BTCUSDT", orderId=order["orderId"])["status"] == "NEW"
    assert c.cancel_order("BTCUSDT", orderId=order["orderId"])["status"] == "CANCELED"
    with Refusal(obs), refused(-1022, 400):
        c.cancel_order("BTCUSDT", orderId=order["orderId"])


def test_stale_timestamp_is_1021(keygate, funded, key_kind, monkeypatch):
    account, obs = funded
    c = client(keygate, keygate.key(account, key_kind, "read,trade"))
    # A client clock 60 s behind; the connector sends no recvWindow, so Binance's 5000 applies.
    monkeypatch.setattr(binance.api, "get_timestamp", lambda: int(time.time() * 1000) - 60000)
    with Refusal(obs), refused(-1021, 400):
        c.account()
    with Refusal(obs), refused(-1021, 400):
        c.new_order("BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.001, price=40000)
    # Inside a widened window it is accepted (recvWindow up to 60000).
    monkeypatch.setattr(binance.api, "get_timestamp", lambda: int(time.time() * 1000) - 6000)
    with Refusal(obs), refused(-1021, 400):
        c.account()
    assert c.account(recvWindow=10000)["canTrade"] is True


def test_wrong_secret_is_1022(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade")
    other = keygate.key(account, key_kind, "read,trade")
    c = client(keygate, key, other.secret if key_kind == "hmac" else other.private_pem)
    with Refusal(obs), refused(-1022, 400):
        c.account()
    with Refusal(obs), refused(-1022, 400):
        c.new_order("BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.001, price=40000)


def test_more_calls(keygate, funded, key_kind):
    """Beyond the main flow: list and filter forms, cancel all, key permissions, trade fees,
    recent trades, and the errors Binance gives for bad requests, with their HTTP statuses."""
    account, obs = funded
    c = client(keygate, keygate.key(account, key_kind, "read,trade", ip=["127.0.0.1"]))
    assert sorted(t["symbol"] for t in c.ticker_24hr(symbols=["BTCUSDT", "ETHBTC"])) == ["BTCUSDT", "ETHBTC"]
    assert sorted(b["asset"] for b in c.account(omitZeroBalances="true")["balances"]) == ["ETH", "USDT"]
    assert D(c.avg_price("ETHUSDT")["price"]) > 0
    perms = c.api_key_permissions()
    assert (perms["ipRestrict"], perms["enableReading"], perms["enableSpotAndMarginTrading"]) == (True, True, True)
    assert D(c.trade_fee(symbol="BTCUSDT")[0]["makerCommission"]) == Decimal("0.001")
    rates = c.query_commission_rates("BTCUSDT")
    assert (rates["symbol"], D(rates["standardCommission"]["taker"])) == ("BTCUSDT", Decimal("0.001"))

    a = c.new_order("ETHUSDT", "SELL", "LIMIT", timeInForce="GTC", quantity=0.01, price=9000, newClientOrderId="conn-a")
    b = c.new_order("ETHUSDT", "SELL", "LIMIT_MAKER", quantity=0.02, price=9100)
    assert sorted(o["orderId"] for o in c.get_open_orders()) == sorted([a["orderId"], b["orderId"]])
    assert c.get_order("ETHUSDT", origClientOrderId="conn-a")["orderId"] == a["orderId"]
    canceled = c.cancel_open_orders("ETHUSDT")
    assert sorted(o["orderId"] for o in canceled) == sorted([a["orderId"], b["orderId"]])
    assert all(o["status"] == "CANCELED" for o in canceled) and obs.locked("ETH") == 0

    start = int(time.time() * 1000) - 60000
    sold = c.new_order("ETHUSDT", "SELL", "MARKET", quantity=0.01)
    recent = c.trades("ETHUSDT", limit=5)
    assert c.historical_trades("ETHUSDT", limit=5) == recent
    # One end time for both, so that a minute beginning between the two calls cannot tell them apart.
    until = {"endTime": int(time.time() * 1000), "limit": 5}
    ui = c.ui_klines("ETHUSDT", "1m", **until)
    assert ui and ui == c.klines("ETHUSDT", "1m", **until)
    agg = c.agg_trades("ETHUSDT", startTime=start)
    assert sum(D(a["q"]) for a in agg) >= Decimal("0.01") and agg[-1]["T"] == recent[-1]["time"]
    assert c.system_status() == {"status": 0, "msg": "normal"}
    assert recent and {"id", "price", "qty", "time", "isBuyerMaker"} <= set(recent[-1])
    assert c.klines("ETHUSDT", "1m", startTime=start, limit=5)
    assert [t["orderId"] for t in c.my_trades("ETHUSDT", startTime=start)] == [sold["orderId"]] * len(
        sold["fills"]
    )

    for code, call in (
        (-1121, lambda: c.new_order("NOPEUSDT", "BUY", "MARKET", quantity=1)),
        (-1102, lambda: c.new_order("ETHUSDT", "BUY", "LIMIT", quantity=0.01, price=1000)),  # no timeInForce
        (-1013, lambda: c.new_order("ETHUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.0001, price=1000)),
        (-2010, lambda: c.new_order("ETHUSDT", "SELL", "LIMIT", timeInForce="GTC", quantity=5, price=9000)),
        (-2013, lambda: c.get_order("ETHUSDT", orderId=99999999)),
    ):
        with Refusal(obs), refused(code, 400):
            call()


def test_malformed_key_is_2014(keygate, funded):
    account, obs = funded
    key = dataclasses.replace(keygate.key(account, "hmac", "read,trade"), api_key="not-a-keygate-key")
    with Refusal(obs), refused(-2014, 401):
        client(keygate, key).account()


def test_rate_limits(weight_limited_keygate, order_limited_keygate):
    """Over the request weight: 429 -1003 with Retry-After; over the order count: 429 -1015 and
    nothing placed; placed orders report X-MBX-ORDER-COUNT-10S (show_limit_usage)."""
    kg = weight_limited_keygate
    c = Spot(base_url=kg.url, timeout=10)
    with refused(-1003, 429) as info:
        for _ in range(30):  # exchangeInfo weighs 20 of the 200 a minute (a minute may turn meanwhile)
            c.exchange_info()
    assert 0 < int(info.value.header["Retry-After"]) <= 60

    kg = order_limited_keygate
    account = kg.account({"USDT": "1000"})
    obs = Observer(kg, account)
    key = kg.key(account, "hmac", "read,trade")
    c = Spot(api_key=key.api_key, api_secret=key.secret, base_url=kg.url, timeout=10, show_limit_usage=True)
    early_in_window()  # the four orders fall in one 10-second window
    for n, price in enumerate((40000, 40001, 40002), start=1):
        placed = c.new_order("BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.001, price=price)
        assert placed["data"]["status"] == "NEW"
        assert placed["limit_usage"]["x-mbx-order-count-10s"] == str(n)
    with Refusal(obs), refused(-1015, 429):
        c.new_order("BTCUSDT", "BUY", "LIMIT", timeInForce="GTC", quantity=0.001, price=40003)
    assert len(c.get_open_orders("BTCUSDT")["data"]) == 3
