from recorder.simulate.config import SimulatorConfig
from recorder.simulate.ledger import EventLedger
from recorder.simulate.market import MarketEvent, MarketGenerator


def events(ticks: int) -> list[MarketEvent]:
    generator = MarketGenerator(
        SimulatorConfig(symbols=("BTCUSDT", "ETHUSDT"), activity=1.0), 1_780_000_000_000
    )
    return [event for _ in range(ticks) for event in generator.step().events]


def test_records_events_and_their_fate() -> None:
    ledger = EventLedger(limit=100)
    entries = ledger.record(events(2))
    entries[0].delivered_to.append("c1")
    entries[1].withheld_from.append("c2")
    records = ledger.events()
    assert [(r.symbol, r.tick) for r in records] == [
        ("BTCUSDT", 0),
        ("ETHUSDT", 0),
        ("BTCUSDT", 1),
        ("ETHUSDT", 1),
    ]
    assert records[0].delivered_to == ("c1",)
    assert records[1].withheld_from == ("c2",)
    assert records[0].payload["s"] == "BTCUSDT"
    assert records[0].payload["E"] == records[0].event_time


def test_filters_by_symbol_and_connection() -> None:
    ledger = EventLedger(limit=100)
    entries = ledger.record(events(3))
    entries[2].delivered_to.append("c1")
    entries[3].withheld_from.append("c1")
    assert {r.symbol for r in ledger.events(symbol="ETHUSDT")} == {"ETHUSDT"}
    assert [r.tick for r in ledger.events(connection_id="c1")] == [1, 1]
    assert ledger.events(symbol="BTCUSDT", connection_id="c1")[0].delivered_to == ("c1",)
    assert ledger.events(connection_id="c9") == []


def test_snapshots_do_not_change_afterwards() -> None:
    ledger = EventLedger(limit=100)
    entries = ledger.record(events(1))
    before = ledger.events()
    entries[0].delivered_to.append("c1")
    assert before[0].delivered_to == ()
    assert ledger.events()[0].delivered_to == ("c1",)


def test_forgets_the_oldest_beyond_the_limit() -> None:
    ledger = EventLedger(limit=3)
    ledger.record(events(2))
    assert ledger.recorded == 4
    assert ledger.forgotten == 1
    assert [(r.symbol, r.tick) for r in ledger.events()] == [
        ("ETHUSDT", 0),
        ("BTCUSDT", 1),
        ("ETHUSDT", 1),
    ]


def test_to_json() -> None:
    ledger = EventLedger(limit=10)
    ledger.record(events(1))[0].delivered_to.append("c1")
    document = ledger.events()[0].to_json()
    assert document["symbol"] == "BTCUSDT"
    assert document["delivered_to"] == ["c1"]
    assert document["withheld_from"] == []
    assert isinstance(document["payload"], dict)
    assert document["E"] == document["payload"]["E"]
