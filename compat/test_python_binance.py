"""python-binance (`binance.client.Client`) against keygate.

Pointing it at keygate: it has no base-URL argument and its constructor pings production, so build
it with `ping=False` and overwrite `API_URL` (/api/v3/...) and `MARGIN_API_URL` (/sapi/v1/...).
Ed25519: `private_key=` the PKCS#8 PEM text (it tells Ed25519 from RSA by length, <= 120 chars).
"""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal

import pytest
from binance.client import Client
from binance.exceptions import BinanceAPIException

from conftest import WITHDRAW_ADDRESS, WITHDRAWN, D, Observer, Refusal, assert_moved, early_in_window, fill_deltas


def client(kg, key, secret=None) -> Client:
    if key.kind == "hmac":
        c = Client(key.api_key, secret if secret is not None else key.secret, ping=False)
    else:
        c = Client(key.api_key, private_key=secret if secret is not None else key.private_pem, ping=False)
    c.API_URL = kg.url + "/api"
    c.MARGIN_API_URL = kg.url + "/sapi"
    return c


def refused(code: int, status: int):
    """pytest.raises for a Binance error surfacing as BinanceAPIException with this code/status."""

    class Check:
        def __enter__(self):
            self.cm = pytest.raises(BinanceAPIException)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.cm.__exit__(*exc)
            e = self.info.value
            assert (e.code, e.status_code) == (code, status), f"{e.code} {e.status_code} {e.message}"
            return handled

    return Check()


def test_full_flow(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(
        account, key_kind, "read,trade,withdraw", ip=["127.0.0.1"], withdraw_addresses=[WITHDRAW_ADDRESS]
    )
    c = client(keygate, key)
    c.ping()

    assert abs(c.get_server_time()["serverTime"] - time.time() * 1000) < 5000

    info = c.get_exchange_info()
    assert {s["symbol"] for s in info["symbols"]} >= {"BTCUSDT", "ETHUSDT", "ETHBTC", "BNBUSDT"}
    sym = c.get_symbol_info("BTCUSDT")
    assert (sym["baseAsset"], sym["quoteAsset"], sym["status"]) == ("BTC", "USDT", "TRADING")
    lot = next(f for f in sym["filters"] if f["filterType"] == "LOT_SIZE")
    assert lot["stepSize"] == "0.00001000"

    assert D(c.get_symbol_ticker(symbol="BTCUSDT")["price"]) > 0
    assert {t["symbol"] for t in c.get_all_tickers()} >= {"BTCUSDT", "ETHUSDT"}
    t24 = c.get_ticker(symbol="BTCUSDT")
    assert 0 < D(t24["bidPrice"]) < D(t24["askPrice"])
    book = c.get_order_book(symbol="BTCUSDT", limit=5)
    assert 0 < len(book["bids"]) <= 5 and 0 < len(book["asks"]) <= 5
    assert D(book["bids"][0][0]) < D(book["asks"][0][0])

    assert c.get_asset_balance(asset="USDT") == {"asset": "USDT", "free": "10000.00000000", "locked": "0.00000000"}
    assert c.get_asset_balance(asset="ETH")["free"] == "1.00000000"

    # Limit order (body-signed POST), query, open orders, cancel (DELETE with a form body).
    before = obs.balances()
    limit = c.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="40000")
    assert limit["status"] == "NEW" and limit["executedQty"] == "0.00000000"
    assert limit["clientOrderId"].startswith("x-HNA2TXFJ")
    assert_moved(before, obs.balances(), {"USDT": Decimal("-40")}, {"USDT": Decimal("40")})
    got = c.get_order(symbol="BTCUSDT", orderId=limit["orderId"])
    assert (got["status"], got["price"], got["origQty"]) == ("NEW", "40000.00000000", "0.00100000")
    assert [o["orderId"] for o in c.get_open_orders(symbol="BTCUSDT")] == [limit["orderId"]]
    canceled = c.cancel_order(symbol="BTCUSDT", orderId=limit["orderId"])
    assert (canceled["orderId"], canceled["status"]) == (limit["orderId"], "CANCELED")
    assert obs.balances() == before
    assert c.get_open_orders(symbol="BTCUSDT") == []
    with refused(-2011, 400):
        c.cancel_order(symbol="BTCUSDT", orderId=limit["orderId"])

    # Market by quantity and by quote amount.
    before = obs.balances()
    market = c.order_market_buy(symbol="BTCUSDT", quantity="0.001")
    assert (market["status"], market["executedQty"]) == ("FILLED", "0.00100000")
    assert_moved(before, obs.balances(), fill_deltas(market))
    before = obs.balances()
    by_quote = c.order_market_buy(symbol="BTCUSDT", quoteOrderQty="20")
    assert by_quote["status"] == "FILLED" and by_quote["origQuoteOrderQty"] == "20.00000000"
    assert Decimal("19") < D(by_quote["cummulativeQuoteQty"]) <= Decimal("20")
    assert_moved(before, obs.balances(), fill_deltas(by_quote))
    before = obs.balances()
    sold = c.order_market_sell(symbol="BTCUSDT", quantity="0.0005")
    assert sold["status"] == "FILLED" and sold["side"] == "SELL"
    assert_moved(before, obs.balances(), fill_deltas(sold))

    orders = {o["orderId"]: o["status"] for o in c.get_all_orders(symbol="BTCUSDT")}
    assert orders == {
        limit["orderId"]: "CANCELED",
        market["orderId"]: "FILLED",
        by_quote["orderId"]: "FILLED",
        sold["orderId"]: "FILLED",
    }
    trades = c.get_my_trades(symbol="BTCUSDT")
    assert {t["orderId"] for t in trades} == {market["orderId"], by_quote["orderId"], sold["orderId"]}
    assert sum(D(t["qty"]) for t in trades if t["orderId"] == sold["orderId"]) == Decimal("0.0005")

    klines = c.get_klines(symbol="BTCUSDT", interval=Client.KLINE_INTERVAL_1MINUTE, limit=3)
    # The trades are seconds old: in the last two candles, whichever minute began meanwhile.
    assert klines and len(klines[-1]) == 12 and sum(D(k[5]) for k in klines[-2:]) > 0

    # Wallet.
    address = c.get_deposit_address(coin="USDT", network="TRX")
    assert (address["coin"], bool(address["address"])) == ("USDT", True)
    deposits = c.get_deposit_history(coin="USDT")
    assert [(d["amount"], d["status"], d["network"]) for d in deposits] == [("10000.00000000", 1, "TRX")]
    coins = {x["coin"] for x in c.get_all_coins_info()}
    assert coins >= {"BTC", "ETH", "USDT", "BNB"}

    before = obs.balances()
    w = c.withdraw(coin="USDT", address=WITHDRAW_ADDRESS, amount="20", network="TRX")
    assert set(w) == {"id"}
    assert_moved(before, obs.balances(), *WITHDRAWN("20"))
    history = c.get_withdraw_history(coin="USDT")
    assert [(h["id"], h["address"], h["amount"], h["network"]) for h in history] == [
        (w["id"], WITHDRAW_ADDRESS, "20.00000000", "TRX")
    ]

    # Test order.
    snap = obs.snapshot()
    assert c.create_test_order(
        symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="40000"
    ) == {}
    assert obs.snapshot() == snap
    with refused(-1013, 400):  # below minNotional, even as a test
        c.create_test_order(
            symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.00001", price="40000"
        )


def test_signs_unencoded_values_and_gets_1022(keygate, funded, key_kind):
    """Reference G3: python-binance signs a POST body's values unencoded but sends them encoded.
    keygate verifies the bytes as sent, as Binance does, so a client order id that needs
    percent-encoding is refused with -1022 and nothing is placed."""
    account, obs = funded
    c = client(keygate, keygate.key(account, key_kind, "read,trade"))
    with Refusal(obs), refused(-1022, 400):
        c.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="40000", newClientOrderId="t:1/a.b_c-d")
    order = c.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="40000", newClientOrderId="plain_id-1.x")
    assert order["clientOrderId"] == "plain_id-1.x"
    c.cancel_order(symbol="BTCUSDT", origClientOrderId="plain_id-1.x")


# ---- permission matrix ---------------------------------------------------------------------


def test_read_only_key_reads_everything_and_cannot_trade_or_withdraw(keygate, funded, key_kind):
    account, obs = funded
    c = client(keygate, keygate.key(account, key_kind, "read"))
    assert c.get_asset_balance(asset="USDT")["free"] == "10000.00000000"
    assert c.get_open_orders(symbol="BTCUSDT") == []
    assert c.get_all_orders(symbol="BTCUSDT") == []
    assert c.get_my_trades(symbol="BTCUSDT") == []
    assert len(c.get_deposit_history()) == 2
    assert c.get_withdraw_history() == []
    assert c.get_deposit_address(coin="USDT")["address"]
    assert c.get_all_coins_info()

    for call in (
        lambda: c.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="40000"),
        lambda: c.order_market_buy(symbol="BTCUSDT", quoteOrderQty="20"),
        lambda: c.create_test_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001"),
        lambda: c.cancel_order(symbol="BTCUSDT", orderId=1),
        lambda: c.withdraw(coin="USDT", address=WITHDRAW_ADDRESS, amount="20", network="TRX"),
    ):
        with Refusal(obs), refused(-2015, 401):
            call()


def test_trading_key_cannot_withdraw(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade", ip=["127.0.0.1"], withdraw_addresses=[WITHDRAW_ADDRESS])
    c = client(keygate, key)
    order = c.order_limit_sell(symbol="ETHUSDT", quantity="0.01", price="9000")
    c.cancel_order(symbol="ETHUSDT", orderId=order["orderId"])
    with Refusal(obs), refused(-2015, 401):
        c.withdraw(coin="USDT", address=WITHDRAW_ADDRESS, amount="20", network="TRX")


def test_key_from_disallowed_ip_is_refused(keygate, funded, key_kind):
    account, obs = funded
    c = client(keygate, keygate.key(account, key_kind, "read,trade", ip=["10.0.0.0/8"]))
    with Refusal(obs), refused(-2015, 401):
        c.get_account()
    with Refusal(obs), refused(-2015, 401):
        c.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="40000")


def test_expired_key_is_refused(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.expiring_key(account, key_kind)
    c = client(keygate, key)
    assert c.get_asset_balance(asset="USDT")["free"] == "10000.00000000"
    keygate.wait_expired(key)
    with Refusal(obs), refused(-2015, 401):
        c.get_account()


def test_revoked_key_is_refused(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade")
    c = client(keygate, key)
    assert c.get_asset_balance(asset="USDT")["free"] == "10000.00000000"
    keygate.revoke(key)
    with Refusal(obs), refused(-2015, 401):
        c.get_account()
    with Refusal(obs), refused(-2015, 401):
        c.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="40000")


def test_stale_timestamp_is_1021(keygate, funded, key_kind):
    account, obs = funded
    c = client(keygate, keygate.key(account, key_kind, "read,trade"))
    c.timestamp_offset = -60000  # a client clock 60 s behind (recvWindow is 10000)
    with Refusal(obs), refused(-1021, 400):
        c.get_account()
    with Refusal(obs), refused(-1021, 400):
        c.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="40000")
    c.timestamp_offset = c.get_server_time()["serverTime"] - int(time.time() * 1000)
    assert c.get_asset_balance(asset="USDT")["free"] == "10000.00000000"


def test_wrong_secret_is_1022(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade")
    other = keygate.key(account, key_kind, "read,trade")
    c = client(keygate, key, other.secret if key_kind == "hmac" else other.private_pem)
    with Refusal(obs), refused(-1022, 400):
        c.get_account()
    with Refusal(obs), refused(-1022, 400):
        c.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="40000")


def test_more_calls(keygate, funded, key_kind):
    """Helpers beyond the main flow: historical klines (paged by startTime), book tickers, the
    key's permissions, trade fees, open orders of every symbol, cancel by client order id,
    response types ACK/RESULT, and LIMIT_MAKER refused when it would take."""
    account, obs = funded
    c = client(keygate, keygate.key(account, key_kind, "read,trade", ip=["127.0.0.1"]))
    perms = c.get_account_api_permissions()
    assert (perms["ipRestrict"], perms["enableSpotAndMarginTrading"], perms["enableWithdrawals"]) == (
        True,
        True,
        False,
    )
    assert [D(f["takerCommission"]) for f in c.get_trade_fee(symbol="ETHUSDT")] == [Decimal("0.001")]
    top = c.get_orderbook_ticker(symbol="ETHUSDT")
    assert 0 < D(top["bidPrice"]) < D(top["askPrice"])

    ack = c.create_order(
        symbol="ETHUSDT", side="SELL", type="LIMIT", timeInForce="GTC", quantity="0.01", price="9000",
        newOrderRespType="ACK",
    )
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    res = c.create_order(
        symbol="ETHUSDT", side="SELL", type="LIMIT", timeInForce="GTC", quantity="0.02", price="9100",
        newOrderRespType="RESULT", newClientOrderId="pb-result-1",
    )
    assert res["status"] == "NEW" and "fills" not in res
    assert sorted(o["orderId"] for o in c.get_open_orders()) == sorted([ack["orderId"], res["orderId"]])
    assert c.cancel_order(symbol="ETHUSDT", origClientOrderId="pb-result-1")["status"] == "CANCELED"
    assert c.cancel_order(symbol="ETHUSDT", orderId=ack["orderId"])["status"] == "CANCELED"
    assert obs.locked("ETH") == 0

    # LIMIT_MAKER priced through the book would take: Binance's -2010.
    ask = D(top["askPrice"])
    with Refusal(obs), refused(-2010, 400):
        c.create_order(symbol="ETHUSDT", side="BUY", type="LIMIT_MAKER", quantity="0.01", price=str(ask + 10))

    sold = c.order_market_sell(symbol="ETHUSDT", quantity="0.01")
    assert sold["status"] == "FILLED"
    agg = c.get_aggregate_trades(symbol="ETHUSDT", limit=len(sold["fills"]))
    assert [(a["p"], a["q"], a["m"]) for a in agg] == [(f["price"], f["qty"], True) for f in sold["fills"]]
    assert c.get_system_status() == {"status": 0, "msg": "normal"}
    klines = c.get_historical_klines("ETHUSDT", Client.KLINE_INTERVAL_1MINUTE, "1 hour ago UTC")
    assert klines and sum(D(k[5]) for k in klines[-2:]) >= Decimal("0.01")


def test_microsecond_time_unit(keygate, funded):
    """`Client(time_unit="MICROSECOND")` sends X-MBX-TIME-UNIT: /api answers in microseconds."""
    account, _ = funded
    key = keygate.key(account, "hmac", "read,trade")
    c = Client(key.api_key, key.secret, ping=False, time_unit="MICROSECOND")
    c.API_URL, c.MARGIN_API_URL = keygate.url + "/api", keygate.url + "/sapi"
    now_us = time.time() * 1_000_000
    assert abs(c.get_server_time()["serverTime"] - now_us) < 5_000_000
    order = c.order_limit_sell(symbol="ETHUSDT", quantity="0.01", price="9000")
    assert abs(order["transactTime"] - now_us) < 5_000_000
    got = c.get_order(symbol="ETHUSDT", orderId=order["orderId"])
    assert abs(got["time"] - now_us) < 5_000_000 and got["updateTime"] == got["time"]
    c.cancel_order(symbol="ETHUSDT", orderId=order["orderId"])


def test_malformed_key_is_2014(keygate, funded):
    account, obs = funded
    key = dataclasses.replace(keygate.key(account, "hmac", "read,trade"), api_key="not-a-keygate-key")
    with Refusal(obs), refused(-2014, 401):
        client(keygate, key).get_account()


def test_rate_limits(weight_limited_keygate, order_limited_keygate):
    """Over the request weight: 429 -1003; over the order count: 429 -1015 and nothing placed."""
    kg = weight_limited_keygate
    c = Client(ping=False)
    c.API_URL = kg.url + "/api"
    with refused(-1003, 429):
        for _ in range(30):  # exchangeInfo weighs 20 of the 200 a minute (a minute may turn meanwhile)
            c.get_exchange_info()

    kg = order_limited_keygate
    account = kg.account({"USDT": "1000"})
    obs = Observer(kg, account)
    c = client(kg, kg.key(account, "ed25519", "read,trade"))
    early_in_window()  # the four orders fall in one 10-second window
    for price in ("40000", "40001", "40002"):
        assert c.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price=price)["status"] == "NEW"
    with Refusal(obs), refused(-1015, 429):
        c.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="40003")
    assert len(c.get_open_orders(symbol="BTCUSDT")) == 3
