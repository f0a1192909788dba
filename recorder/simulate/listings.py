"""Which contracts the exchange lists and in which status, as a test schedules them (sans-IO).

Binance lists a contract ``PENDING_TRADING`` before it opens, ``TRADING`` while it trades and
``SETTLING`` once it stops; a delisted contract leaves ``exchangeInfo``. Only a ``TRADING``
contract's ticker changes, so only it has miniTicker events; a stream subscribed for any other
is silent, as one for a symbol Binance never listed is. The configured symbols start
``TRADING``; a contract listed later gets its market from the seed
(:func:`~recorder.simulate.profiles.listing_profile`).
"""

from dataclasses import dataclass, replace
from enum import StrEnum

from recorder.simulate.market import MarketGenerator
from recorder.simulate.profiles import SymbolProfile
from recorder.symbols import is_valid_symbol


class ContractStatus(StrEnum):
    """The statuses of a listed contract that the simulator schedules."""

    PENDING_TRADING = "PENDING_TRADING"
    TRADING = "TRADING"
    SETTLING = "SETTLING"


DELISTED = "DELISTED"
"""What the control endpoint calls a contract's removal: it is no status Binance lists."""


@dataclass(frozen=True, slots=True)
class Contract:
    """One listed contract.

    Attributes:
        symbol: the contract, upper-case.
        status: where it is in its life.
        onboard_ms: ``onboardDate``: when it was listed, ms since the epoch.
        profile: how its market is quoted.
    """

    symbol: str
    status: ContractStatus
    onboard_ms: int
    profile: SymbolProfile

    def to_json(self) -> dict[str, object]:
        """Describe the contract as ``/_sim/listings`` does."""
        return {"symbol": self.symbol, "status": str(self.status), "onboardDate": self.onboard_ms}


class ContractBook:
    """The listed contracts, in listing order, and the market they let trade.

    Args:
        generator: the market; each contract's status halts or resumes its ticker.
        onboard_ms: ``onboardDate`` of the configured symbols, listed ``TRADING``.
    """

    def __init__(self, generator: MarketGenerator, onboard_ms: int) -> None:
        self._generator = generator
        self._contracts = {
            symbol: Contract(symbol, ContractStatus.TRADING, onboard_ms, profile)
            for symbol, profile in generator.profiles.items()
        }

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._contracts

    def contracts(self) -> list[Contract]:
        """The listed contracts, in listing order."""
        return list(self._contracts.values())

    def change(self, symbol: str, status: str, now_ms: int) -> Contract | None:
        """Apply a scheduled change: list, move to ``status``, or delist (:data:`DELISTED`).

        Returns:
            The contract as it is now, or ``None`` once delisted.

        Raises:
            ValueError: an unknown status, a malformed symbol, or delisting what is not listed.
        """
        if status == DELISTED:
            self.delist(symbol)
            return None
        try:
            known = ContractStatus(status)
        except ValueError:
            expected = ", ".join([*ContractStatus, DELISTED])
            raise ValueError(f"status {status!r}: expected one of {expected}") from None
        return self.set_status(symbol, known, now_ms)

    def set_status(self, symbol: str, status: ContractStatus, now_ms: int) -> Contract:
        """List ``symbol`` with ``status``, or move it there if it is listed already.

        Args:
            symbol: the contract, upper-case as Binance spells it.
            status: its new status; only ``TRADING`` lets its ticker change.
            now_ms: the simulated time now, the ``onboardDate`` of a new listing.

        Returns:
            The contract as it is now.

        Raises:
            ValueError: ``symbol`` is not a symbol a stream name can carry.
        """
        current = self._contracts.get(symbol)
        if current is None:
            # A stream name is the lower-cased symbol; the server maps it back by upper-casing.
            if not is_valid_symbol(symbol) or symbol.lower().upper() != symbol:
                raise ValueError(f"{symbol!r} is not an upper-case Binance symbol")
            profile = self._generator.profiles.get(symbol) or self._generator.add_symbol(symbol)
            contract = Contract(symbol, status, now_ms, profile)
        else:
            contract = replace(current, status=status)
        self._contracts[symbol] = contract
        self._generator.set_trading(symbol, trading=status is ContractStatus.TRADING)
        return contract

    def delist(self, symbol: str) -> Contract:
        """Remove ``symbol`` from the listing; its ticker stops. Listing it again resumes it.

        Returns:
            The contract as it was.

        Raises:
            ValueError: ``symbol`` is not listed.
        """
        contract = self._contracts.pop(symbol, None)
        if contract is None:
            raise ValueError(f"{symbol!r} is not listed")
        self._generator.set_trading(symbol, trading=False)
        return contract
