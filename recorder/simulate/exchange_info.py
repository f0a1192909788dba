"""The body of ``GET /fapi/v1/exchangeInfo``, sans-IO: the listed contracts as Binance lists them.

Every field Binance sends is there, with Binance's JSON types (decimals as strings, dates and
precisions as integers), so a client's model of the answer parses it whole. Values the
simulator does not model (margins, fees, order limits) are fixed, typical ones.
"""

import datetime as dt
import re
from collections.abc import Iterable

from recorder.simulate.listings import Contract

PERPETUAL_DELIVERY_MS = 4_133_404_800_000
"""The delivery date Binance gives perpetual contracts (2100-12-25 08:00 UTC)."""
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "BUSD", "BTC", "ETH")
ORDER_TYPES = (
    "LIMIT",
    "MARKET",
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
)
TIME_IN_FORCE = ("GTC", "IOC", "FOK", "GTX", "GTD")


def split_pair(pair: str) -> tuple[str, str]:
    """Split a pair into base and quote assets.

    >>> split_pair("BTCUSDT"), split_pair("币安人生USDT"), split_pair("ETHBTC")
    (('BTC', 'USDT'), ('币安人生', 'USDT'), ('ETH', 'BTC'))
    """
    for quote in QUOTE_ASSETS:
        if pair.endswith(quote) and len(pair) > len(quote):
            return pair[: -len(quote)], quote
    return pair, "USDT"


def delivery_date_ms(symbol: str) -> int:
    """Return the delivery time of a ``_YYMMDD`` contract (08:00 UTC), else the perpetual one.

    >>> delivery_date_ms("BTCUSDT_260327")
    1774598400000
    """
    _, _, suffix = symbol.partition("_")
    if re.fullmatch(r"\d{6}", suffix):
        try:
            delivery = dt.datetime(
                2000 + int(suffix[:2]), int(suffix[2:4]), int(suffix[4:]), 8, tzinfo=dt.UTC
            )
        except ValueError:
            return PERPETUAL_DELIVERY_MS
        return int(delivery.timestamp() * 1000)
    return PERPETUAL_DELIVERY_MS


def symbol_info(contract: Contract) -> dict[str, object]:
    """Describe one contract as an entry of ``symbols``, keys in Binance's order."""
    profile = contract.profile
    price = profile.price
    base, quote = split_pair(profile.pair)
    return {
        "symbol": contract.symbol,
        "pair": profile.pair,
        "contractType": "CURRENT_QUARTER" if "_" in contract.symbol else "PERPETUAL",
        "deliveryDate": delivery_date_ms(contract.symbol),
        "onboardDate": contract.onboard_ms,
        "status": str(contract.status),
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": base,
        "quoteAsset": quote,
        "marginAsset": quote,
        "pricePrecision": price.price_decimals,
        "quantityPrecision": price.quantity_decimals,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10_000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": price.tick_size,
                "maxPrice": "10000000",
                "tickSize": price.tick_size,
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": price.step_size,
                "maxQty": "100000000000",
                "stepSize": price.step_size,
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": price.step_size,
                "maxQty": "1000000000",
                "stepSize": price.step_size,
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": "5"},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": list(ORDER_TYPES),
        "timeInForce": list(TIME_IN_FORCE),
    }


def exchange_info(
    contracts: Iterable[Contract], server_time: int, weight_limit: int
) -> dict[str, object]:
    """Build the body of ``GET /fapi/v1/exchangeInfo`` from the contracts listed now.

    Args:
        contracts: the listed contracts, in listing order.
        server_time: the exchange's clock, ms since the epoch.
        weight_limit: the request weight per minute, as ``rateLimits`` announces it.
    """
    symbols = [symbol_info(contract) for contract in contracts]
    margin_assets = sorted({str(entry["marginAsset"]) for entry in symbols})
    return {
        "timezone": "UTC",
        "serverTime": server_time,
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": weight_limit,
            },
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1_200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [
            {"asset": asset, "marginAvailable": True, "autoAssetExchange": "0"}
            for asset in margin_assets
        ],
        "symbols": symbols,
    }
