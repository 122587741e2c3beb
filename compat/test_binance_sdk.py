"""Binance's official modular SDK against keygate: binance-sdk-spot for market data and orders,
binance-sdk-wallet for deposits and withdrawals (the spot SDK has no wallet calls).

Pointing it at keygate: `ConfigurationRestAPI(api_key=..., api_secret=..., base_path=URL)` (no /api,
no trailing slash), or `private_key=PEM_TEXT` instead of `api_secret` for Ed25519. Defaults are
kept on purpose, the 1 s timeout included: keygate must answer within it.

Responses parse into strictly typed pydantic models; on a type mismatch the SDK logs a warning
and relaxes the model for the rest of the process, so every test here fails on such a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from decimal import Decimal

import binance_common.utils
import pytest
from binance_common.configuration import ConfigurationRestAPI
from binance_common.errors import BadRequestError, Error, UnauthorizedError
from binance_sdk_spot.rest_api.models import (
    ExchangeInfoResponse,
    KlinesIntervalEnum,
    NewOrderResponse,
    NewOrderSideEnum,
    NewOrderTimeInForceEnum,
    NewOrderTypeEnum,
    OrderTestSideEnum,
    OrderTestTimeInForceEnum,
    OrderTestTypeEnum,
)
from binance_sdk_spot.spot import Spot
from binance_sdk_wallet.wallet import Wallet

from conftest import WITHDRAW_ADDRESS, WITHDRAWN, D, Observer, Refusal, assert_moved, early_in_window, fill_deltas

BUY, SELL = NewOrderSideEnum.BUY, NewOrderSideEnum.SELL
LIMIT, MARKET, GTC = NewOrderTypeEnum.LIMIT, NewOrderTypeEnum.MARKET, NewOrderTimeInForceEnum.GTC


@pytest.fixture(autouse=True)
def strict_models(caplog):
    """Fails a test whose responses did not match the SDK's declared types."""
    caplog.set_level(logging.WARNING)
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    bad = [r.getMessage() for r in records if "declared types" in r.getMessage() or "parse" in r.getMessage()]
    assert not bad, bad


def config(kg, key, secret=None) -> ConfigurationRestAPI:
    if key.kind == "hmac":
        return ConfigurationRestAPI(api_key=key.api_key, api_secret=secret or key.secret, base_path=kg.url)
    return ConfigurationRestAPI(api_key=key.api_key, private_key=secret or key.private_pem, base_path=kg.url)


def spot(kg, key, secret=None):
    return Spot(config_rest_api=config(kg, key, secret)).rest_api


def wallet(kg, key, secret=None):
    return Wallet(config_rest_api=config(kg, key, secret)).rest_api


def raw(model) -> dict:
    """A response model back in Binance's field names."""
    return model.to_dict()


class refused:
    """Expects the SDK's error class for this Binance code (the SDK keeps the code in status_code)."""

    def __init__(self, cls: type[Error], code: int):
        self.cls, self.code = cls, code

    def __enter__(self):
        self.cm = pytest.raises(self.cls)
        self.info = self.cm.__enter__()
        return self.info

    def __exit__(self, *exc):
        handled = self.cm.__exit__(*exc)
        assert self.info.value.status_code == self.code, self.info.value.error_message
        return handled


def test_full_flow(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(
        account, key_kind, "read,trade,withdraw", ip=["127.0.0.1"], withdraw_addresses=[WITHDRAW_ADDRESS]
    )
    api, w = spot(keygate, key), wallet(keygate, key)

    api.ping().data()
    assert abs(api.time().data().server_time - time.time() * 1000) < 5000

    info = api.exchange_info(symbols=["BTCUSDT", "ETHUSDT"]).data()
    assert isinstance(info, ExchangeInfoResponse)  # every filter type is one the SDK knows
    assert sorted(s.symbol for s in info.symbols) == ["BTCUSDT", "ETHUSDT"]
    btc = next(s for s in info.symbols if s.symbol == "BTCUSDT")
    assert (btc.base_asset, btc.quote_asset, btc.status) == ("BTC", "USDT", "TRADING")

    assert D(api.ticker_price(symbol="BTCUSDT").data().actual_instance.price) > 0
    t24 = api.ticker24hr(symbol="BTCUSDT").data().actual_instance
    assert 0 < D(t24.bid_price) < D(t24.ask_price)
    bt = api.ticker_book_ticker(symbol="BTCUSDT").data().actual_instance
    assert (bt.bid_price, bt.ask_price) == (t24.bid_price, t24.ask_price)
    book = api.depth(symbol="BTCUSDT", limit=5).data()
    assert 0 < len(book.bids) <= 5 and book.bids[0][0] == bt.bid_price and isinstance(book.last_update_id, int)

    acct = api.get_account(omit_zero_balances=True).data()
    assert {b.asset: (b.free, b.locked) for b in acct.balances} == {
        "USDT": ("10000.00000000", "0.00000000"),
        "ETH": ("1.00000000", "0.00000000"),
    }

    # Limit order (floats go out as str(float): price=40000.0), query, open orders, cancel.
    before = obs.balances()
    limit = api.new_order(symbol="BTCUSDT", side=BUY, type=LIMIT, time_in_force=GTC, quantity=0.001, price=40000.0)
    limit = limit.data()
    assert isinstance(limit, NewOrderResponse) and limit.status == "NEW" and limit.order_list_id == -1
    assert_moved(before, obs.balances(), {"USDT": Decimal("-40")}, {"USDT": Decimal("40")})
    got = api.get_order(symbol="BTCUSDT", order_id=limit.order_id).data()
    assert (got.status, got.price, got.is_working) == ("NEW", "40000.00000000", True)
    assert [o.order_id for o in api.get_open_orders(symbol="BTCUSDT").data()] == [limit.order_id]
    canceled = api.delete_order(symbol="BTCUSDT", order_id=limit.order_id).data()
    assert (canceled.order_id, canceled.status) == (limit.order_id, "CANCELED")
    assert obs.balances() == before
    with refused(BadRequestError, -2011):
        api.delete_order(symbol="BTCUSDT", order_id=limit.order_id)

    # Market by quantity and by quote amount.
    before = obs.balances()
    market = api.new_order(symbol="BTCUSDT", side=BUY, type=MARKET, quantity=0.001).data()
    assert (market.status, market.executed_qty) == ("FILLED", "0.00100000")
    assert_moved(before, obs.balances(), fill_deltas(raw(market)))
    before = obs.balances()
    by_quote = api.new_order(symbol="BTCUSDT", side=BUY, type=MARKET, quote_order_qty=20.0).data()
    assert by_quote.status == "FILLED" and Decimal("19") < D(by_quote.cummulative_quote_qty) <= 20
    assert_moved(before, obs.balances(), fill_deltas(raw(by_quote)))

    orders = {o.order_id: o.status for o in api.all_orders(symbol="BTCUSDT").data()}
    assert orders == {limit.order_id: "CANCELED", market.order_id: "FILLED", by_quote.order_id: "FILLED"}
    trades = api.my_trades(symbol="BTCUSDT").data()
    assert {t.order_id for t in trades} == {market.order_id, by_quote.order_id}
    assert sum(D(t.qty) for t in trades if t.order_id == market.order_id) == Decimal("0.001")
    klines = api.klines(symbol="BTCUSDT", interval=KlinesIntervalEnum.INTERVAL_1m, limit=3).data()
    # The trades are seconds old: in the last two candles, whichever minute began meanwhile.
    assert klines and len(klines[-1]) == 12 and sum(D(k[5]) for k in klines[-2:]) > 0

    # Wallet SDK.
    coins = {c.coin for c in w.all_coins_information().data()}
    assert coins >= {"BTC", "ETH", "USDT", "BNB"}
    addr = w.deposit_address(coin="USDT", network="TRX").data()
    assert addr.coin == "USDT" and addr.address
    deposits = w.deposit_history(coin="USDT").data()
    assert [(d.amount, d.status, d.network) for d in deposits] == [("10000.00000000", 1, "TRX")]
    before = obs.balances()
    wd = w.withdraw(coin="USDT", address=WITHDRAW_ADDRESS, amount=20.0, network="TRX").data()
    assert wd.id
    assert_moved(before, obs.balances(), *WITHDRAWN("20"))
    history = w.withdraw_history(coin="USDT").data()
    assert [(h.id, h.amount, h.transaction_fee, h.address) for h in history] == [
        (wd.id, "20.00000000", "1.00000000", WITHDRAW_ADDRESS)
    ]

    # Test order.
    snap = obs.snapshot()
    api.order_test(
        symbol="BTCUSDT",
        side=OrderTestSideEnum.BUY,
        type=OrderTestTypeEnum.LIMIT,
        time_in_force=OrderTestTimeInForceEnum.GTC,
        quantity=0.001,
        price=40000.0,
    ).data()
    assert obs.snapshot() == snap


def test_public_calls_send_an_empty_api_key(keygate):
    """The SDK sends `X-MBX-APIKEY: ''` when no key is configured; public endpoints ignore it."""
    api = Spot(config_rest_api=ConfigurationRestAPI(base_path=keygate.url)).rest_api
    assert D(api.ticker_price(symbol="ETHUSDT").data().actual_instance.price) > 0
    assert api.depth(symbol="ETHUSDT", limit=1).data().asks


# ---- permission matrix ---------------------------------------------------------------------


def buy_limit(api):
    return api.new_order(symbol="BTCUSDT", side=BUY, type=LIMIT, time_in_force=GTC, quantity=0.001, price=40000.0)


def test_read_only_key_reads_everything_and_cannot_trade_or_withdraw(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read")
    api, w = spot(keygate, key), wallet(keygate, key)
    assert api.get_account().data().can_trade is False
    assert api.get_open_orders(symbol="BTCUSDT").data() == []
    assert api.all_orders(symbol="BTCUSDT").data() == []
    assert api.my_trades(symbol="BTCUSDT").data() == []
    assert len(w.deposit_history().data()) == 2
    assert w.withdraw_history().data() == []
    assert w.deposit_address(coin="USDT").data().address
    for call in (
        lambda: buy_limit(api),
        lambda: api.new_order(symbol="BTCUSDT", side=BUY, type=MARKET, quote_order_qty=20.0),
        lambda: api.order_test(symbol="BTCUSDT", side=OrderTestSideEnum.BUY, type=OrderTestTypeEnum.MARKET, quantity=0.001),
        lambda: api.delete_order(symbol="BTCUSDT", order_id=1),
        lambda: w.withdraw(coin="USDT", address=WITHDRAW_ADDRESS, amount=20.0, network="TRX"),
    ):
        with Refusal(obs), refused(UnauthorizedError, -2015):
            call()


def test_trading_key_cannot_withdraw(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade", ip=["127.0.0.1"], withdraw_addresses=[WITHDRAW_ADDRESS])
    api = spot(keygate, key)
    order = api.new_order(symbol="ETHUSDT", side=SELL, type=LIMIT, time_in_force=GTC, quantity=0.01, price=9000.0)
    api.delete_order(symbol="ETHUSDT", order_id=order.data().order_id)
    with Refusal(obs), refused(UnauthorizedError, -2015):
        wallet(keygate, key).withdraw(coin="USDT", address=WITHDRAW_ADDRESS, amount=20.0, network="TRX")


def test_key_from_disallowed_ip_is_refused(keygate, funded, key_kind):
    account, obs = funded
    api = spot(keygate, keygate.key(account, key_kind, "read,trade", ip=["10.0.0.0/8"]))
    with Refusal(obs), refused(UnauthorizedError, -2015):
        api.get_account()
    with Refusal(obs), refused(UnauthorizedError, -2015):
        buy_limit(api)


def test_expired_key_is_refused(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.expiring_key(account, key_kind)
    api = spot(keygate, key)
    assert api.get_account().data().can_withdraw is False
    keygate.wait_expired(key)
    with Refusal(obs), refused(UnauthorizedError, -2015):
        api.get_account()


def test_revoked_key_is_refused(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade")
    api = spot(keygate, key)
    assert api.get_account().data().can_trade is True
    keygate.revoke(key)
    with Refusal(obs), refused(UnauthorizedError, -2015):
        api.get_account()
    with Refusal(obs), refused(UnauthorizedError, -2015):
        buy_limit(api)


def test_stale_timestamp_is_1021(keygate, funded, key_kind, monkeypatch):
    account, obs = funded
    api = spot(keygate, keygate.key(account, key_kind, "read,trade"))
    monkeypatch.setattr(binance_common.utils, "get_timestamp", lambda: int(time.time() * 1000) - 60000)
    with Refusal(obs), refused(BadRequestError, -1021):
        api.get_account()
    with Refusal(obs), refused(BadRequestError, -1021):
        buy_limit(api)


def test_wrong_secret_is_1022(keygate, funded, key_kind):
    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade")
    other = keygate.key(account, key_kind, "read,trade")
    api = spot(keygate, key, other.secret if key_kind == "hmac" else other.private_pem)
    with Refusal(obs), refused(BadRequestError, -1022):
        api.get_account()
    with Refusal(obs), refused(BadRequestError, -1022):
        buy_limit(api)


def test_more_calls(keygate, funded, key_kind):
    """Beyond the main flow: list forms of the market data calls, Decimal amounts, response types
    ACK and RESULT, cancel all, the key's own restrictions and the trade fees (wallet SDK)."""
    from decimal import Decimal as Dec

    from binance_sdk_spot.rest_api.models import NewOrderNewOrderRespTypeEnum as RespType

    account, obs = funded
    key = keygate.key(account, key_kind, "read,trade", ip=["127.0.0.1/32", "::1"])
    api, w = spot(keygate, key), wallet(keygate, key)

    everything = api.exchange_info().data()
    assert isinstance(everything, ExchangeInfoResponse) and len(everything.symbols) == 4
    prices = api.ticker_price().data().actual_instance
    assert {p.symbol for p in prices} == {"BTCUSDT", "ETHUSDT", "ETHBTC", "BNBUSDT"}
    t24 = api.ticker24hr(symbols=["BTCUSDT", "ETHUSDT"]).data().actual_instance
    assert sorted(t.symbol for t in t24) == ["BTCUSDT", "ETHUSDT"]
    assert api.avg_price(symbol="BTCUSDT").data().mins == 5

    ack = api.new_order(
        symbol="ETHUSDT", side=SELL, type=LIMIT, time_in_force=GTC, quantity=Dec("0.0100"), price=Dec("9000.00"),
        new_order_resp_type=RespType.ACK,
    ).data()
    assert ack.order_id and ack.status is None and ack.fills is None
    res = api.new_order(
        symbol="ETHUSDT", side=SELL, type=LIMIT, time_in_force=GTC, quantity=0.02, price=9100.0,
        new_order_resp_type=RespType.RESULT,
    ).data()
    assert res.status == "NEW" and res.fills is None
    assert obs.locked("ETH") == Dec("0.03")
    canceled = api.delete_open_orders(symbol="ETHUSDT").data()
    assert sorted(c.order_id for c in canceled) == sorted([ack.order_id, res.order_id])
    assert obs.locked("ETH") == 0

    sold = api.new_order(symbol="ETHUSDT", side=SELL, type=MARKET, quantity=0.01).data()
    agg = api.agg_trades(symbol="ETHUSDT", limit=len(sold.fills)).data()
    assert [(a.p, a.q, a.m) for a in agg] == [(f.price, f.qty, True) for f in sold.fills]
    assert w.system_status().data().status == 0
    hist = api.historical_trades(symbol="ETHUSDT", limit=len(sold.fills)).data()
    assert [(t.price, t.qty, t.is_buyer_maker) for t in hist] == [(f.price, f.qty, True) for f in sold.fills]
    assert sum(k[8] for k in api.ui_klines(symbol="ETHUSDT", interval="1m", limit=2).data()) >= len(sold.fills)

    comm = api.account_commission(symbol="BTCUSDT").data()
    assert (comm.symbol, comm.standard_commission.maker, comm.standard_commission.taker) == (
        "BTCUSDT", "0.00100000", "0.00100000",
    )
    assert comm.discount.enabled_for_account is False

    r = w.get_api_key_permission().data()
    assert (r.ip_restrict, r.enable_reading, r.enable_spot_and_margin_trading, r.enable_withdrawals) == (
        True, True, True, False,
    )
    fees = {f.symbol: (D(f.maker_commission), D(f.taker_commission)) for f in w.trade_fee().data()}
    assert fees["BTCUSDT"] == (Dec("0.001"), Dec("0.001"))


def test_microsecond_time_unit(keygate, funded):
    """`time_unit="MICROSECOND"` sends X-MBX-TIME-UNIT: the spot API answers in microseconds (and
    takes startTime in them); the wallet API keeps milliseconds, as on Binance."""
    account, _ = funded
    key = keygate.key(account, "ed25519", "read,trade")
    cfg = ConfigurationRestAPI(
        api_key=key.api_key, private_key=key.private_pem, base_path=keygate.url, time_unit="MICROSECOND"
    )
    api, w = Spot(config_rest_api=cfg).rest_api, Wallet(config_rest_api=cfg).rest_api
    now_us = time.time() * 1_000_000
    assert abs(api.time().data().server_time - now_us) < 5_000_000
    sold = api.new_order(symbol="ETHUSDT", side=SELL, type=MARKET, quantity=0.01).data()
    assert abs(sold.transact_time - now_us) < 5_000_000
    since_us = int(now_us) - 60_000_000
    trades = api.my_trades(symbol="ETHUSDT", start_time=since_us).data()
    assert [t.order_id for t in trades] == [sold.order_id] * len(sold.fills)
    assert all(abs(t.time - now_us) < 5_000_000 for t in trades)
    assert api.my_trades(symbol="ETHUSDT", start_time=int(now_us) + 60_000_000).data() == []
    deposits = w.deposit_history().data()
    assert all(abs(d.insert_time - now_us / 1000) < 600_000 for d in deposits)


def test_malformed_key_is_2014(keygate, funded):
    account, obs = funded
    key = dataclasses.replace(keygate.key(account, "hmac", "read,trade"), api_key="not-a-keygate-key")
    with Refusal(obs), refused(UnauthorizedError, -2014):
        spot(keygate, key).get_account()


def test_rate_limits(weight_limited_keygate, order_limited_keygate):
    """Over the request weight: TooManyRequestsError (-1003); over the order count:
    TooManyRequestsError (-1015) and nothing placed; placed orders' rate_limits show the count."""
    from binance_common.errors import TooManyRequestsError

    kg = weight_limited_keygate
    api = Spot(config_rest_api=ConfigurationRestAPI(base_path=kg.url)).rest_api
    with refused(TooManyRequestsError, -1003):
        for _ in range(30):  # exchangeInfo weighs 20 of the 200 a minute (a minute may turn meanwhile)
            api.exchange_info()

    kg = order_limited_keygate
    account = kg.account({"USDT": "1000"})
    obs = Observer(kg, account)
    api = spot(kg, kg.key(account, "ed25519", "read,trade"))
    early_in_window()  # the four orders fall in one 10-second window
    for n, price in enumerate((40000.0, 40001.0, 40002.0), start=1):
        placed = api.new_order(symbol="BTCUSDT", side=BUY, type=LIMIT, time_in_force=GTC, quantity=0.001, price=price)
        assert placed.data().status == "NEW"
        counts = {(r.rateLimitType, r.interval, r.intervalNum): r.count for r in placed.rate_limits}
        assert counts[("ORDERS", "SECOND", 10)] == n
    with Refusal(obs), refused(TooManyRequestsError, -1015):
        buy_limit(api)
    assert len(api.get_open_orders(symbol="BTCUSDT").data()) == 3
