"""Firing faults: scheduling them, applying them to connections and handshakes, logging them.

What a fault is and how it is written lives in :mod:`recorder.simulate.faults`; here a fault
acts. ``drop`` aborts the TCP connection, ``close`` sends a close frame, ``stall`` and
``blackhole`` mark the connection until their end, frame faults queue their bad frames behind
the connection's data, ``refuse`` arms the handshake gate and ``rest_fail`` the REST one. Every
firing is recorded.
"""

import asyncio
import logging
import math
from dataclasses import dataclass

from aiohttp import WSCloseCode

from recorder.simulate.connections import Connection, ConnectionTable, OutboundFrame
from recorder.simulate.event_clock import EventClock, wall_ms
from recorder.simulate.fault_frames import (
    array_flood_text,
    bad_field_payload,
    future_time_payload,
    garbage_text,
    hostile_data,
    hostile_payload,
    huge_payload,
)
from recorder.simulate.faults import (
    DEFAULT_SLOW_START,
    FRAME_KINDS,
    HOSTILE_DATA_KINDS,
    HOSTILE_SYMBOL,
    UNLISTED_SYMBOL,
    Fault,
    FaultKind,
    HandshakeGate,
)
from recorder.simulate.market import encode_json
from recorder.simulate.profiles import pair_of
from recorder.simulate.protocol import array_json
from recorder.simulate.rest_faults import RestFaultGate
from recorder.symbols import ALL_MARKET_STREAM, stream_name

log = logging.getLogger(__name__)

SAMPLE_CHARS = 200
"""How much of each frame a fault sent its record keeps."""


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault that fired.

    Attributes:
        fault: what was asked.
        fired_at_ms: wall clock when it fired.
        connection_ids: the connections it hit (none for ``refuse``).
        samples: the start of each frame it sent, for frame faults.
    """

    fault: Fault
    fired_at_ms: int
    connection_ids: tuple[str, ...]
    samples: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """Describe the record as ``GET /_sim/faults`` lists it."""
        return {
            "fault": self.fault.to_json(),
            "fired_at_ms": self.fired_at_ms,
            "connections": list(self.connection_ids),
            "samples": list(self.samples),
        }


class FaultInjector:
    """Fires faults when they are due, on the connections open then, and keeps their record.

    Args:
        symbols: the listed symbols (frame faults build their payloads from them).
        clock: the exchange's clock (timers, monotonic and simulated time, the market).
        connections: the open connections faults hit.
        gate: the handshake gate ``refuse`` arms.
        rest_gate: the REST gate ``rest_fail`` arms.
    """

    def __init__(
        self,
        symbols: tuple[str, ...],
        clock: EventClock,
        connections: ConnectionTable,
        gate: HandshakeGate,
        rest_gate: RestFaultGate,
    ) -> None:
        self._symbols = symbols
        self._clock = clock
        self._connections = connections
        self._gate = gate
        self._rest_gate = rest_gate
        self._frame_serial = 0
        self._records: list[FaultRecord] = []
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def refusals_pending(self) -> int:
        """How many handshakes ``refuse`` faults will still refuse."""
        return self._gate.pending

    def records(self) -> list[FaultRecord]:
        """Return the faults that fired, in firing order."""
        return list(self._records)

    def inject(self, fault: Fault) -> None:
        """Schedule a fault ``fault.at`` seconds from now; one with ``at == 0`` fires at once.

        Raises:
            RuntimeError: the exchange is not started.
        """
        loop = self._clock.require_loop()
        if fault.at == 0:
            self._fire(fault)
            return

        def fire() -> None:
            self._timers.discard(timer)
            self._fire(fault)

        timer = loop.call_later(fault.at, fire)
        self._timers.add(timer)

    def cancel_pending(self) -> None:
        """Forget the faults scheduled but not fired yet (the exchange stops)."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _fire(self, fault: Fault) -> None:
        now = self._clock.monotonic()
        samples: list[str] = []
        targets: list[Connection] = []
        if fault.kind is FaultKind.REFUSE:
            self._gate.arm(fault)
        elif fault.kind is FaultKind.REST_FAIL:
            self._rest_gate.arm(fault)
        elif fault.kind is FaultKind.SLOW_START:
            hold = DEFAULT_SLOW_START if fault.duration is None else fault.duration
            self._connections.slow_next_starts(hold, fault.count)
        else:
            targets = [
                conn
                for conn in self._connections
                if not conn.ended and fault.connection_id in {None, conn.connection_id}
            ]
        for conn in targets:
            self._apply(fault, conn, now, samples)
        record = FaultRecord(
            fault, wall_ms(), tuple(conn.connection_id for conn in targets), tuple(samples)
        )
        self._records.append(record)
        log.info(
            "fault %s fired on %s", fault.kind.value, list(record.connection_ids) or "handshakes"
        )

    def _apply(self, fault: Fault, conn: Connection, now: float, samples: list[str]) -> None:
        """Do ``fault`` to one connection; frames sent are sampled into ``samples``."""
        if fault.kind is FaultKind.DROP:
            conn.drop()
        elif fault.kind is FaultKind.CLOSE:
            conn.close(WSCloseCode.GOING_AWAY, "closed by the exchange")
        elif fault.kind in {FaultKind.STALL, FaultKind.BLACKHOLE, FaultKind.DEAF}:
            until = math.inf if fault.duration is None else now + fault.duration
            if fault.kind is FaultKind.STALL:
                conn.stalled_until = max(conn.stalled_until, until)
            elif fault.kind is FaultKind.DEAF:
                conn.deaf_until = max(conn.deaf_until, until)
            else:
                conn.blackholed_until = max(conn.blackholed_until, until)
        elif fault.kind in FRAME_KINDS:
            for _ in range(fault.count):
                frame = self._fault_frame(fault, conn)
                if isinstance(frame, bytes):
                    samples.append(frame[:SAMPLE_CHARS].decode("utf-8", "backslashreplace"))
                    conn.enqueue(OutboundFrame("", binary=frame))
                else:
                    samples.append(frame[:SAMPLE_CHARS])
                    conn.enqueue(OutboundFrame(frame))

    def _fault_frame(self, fault: Fault, conn: Connection) -> str | bytes:
        self._frame_serial += 1
        serial = self._frame_serial
        if fault.kind in {FaultKind.GARBAGE, FaultKind.ARRAY_FLOOD}:
            return garbage_text(serial) if fault.kind is FaultKind.GARBAGE else array_flood_text()
        session = conn.session
        listed = self._symbols
        generator = self._clock.generator
        now_ms = self._clock.simulated_now_ms()
        if fault.kind is FaultKind.UNSUBSCRIBED:
            subscribed = session.symbols
            strangers = [symbol for symbol in listed if symbol not in subscribed]
            if strangers and not session.all_market:
                symbol = strangers[0]
                payload: dict[str, object] = dict(generator.payload_now(symbol, now_ms))
            else:
                symbol = UNLISTED_SYMBOL
                payload = dict(generator.payload_now(listed[0], now_ms))
                payload["s"] = symbol
                if "ps" in payload:
                    payload["ps"] = pair_of(symbol)
            return session.frame(stream_name(symbol), encode_json(payload))
        own = [symbol for symbol in listed if symbol in session.symbols]
        symbol = own[0] if own else listed[0]
        template = generator.payload_now(symbol, now_ms)
        if fault.kind in HOSTILE_DATA_KINDS:
            hostile = hostile_data(fault.kind, template)
            if isinstance(hostile, str):
                return session.frame(stream_name(symbol), hostile)
            # Framed by hand: session.frame takes text, and these bytes have no text form.
            wrapper = f'{{"stream":{encode_json(stream_name(symbol))},"data":'.encode()
            return wrapper + hostile + b"}" if session.combined else hostile
        if fault.kind is FaultKind.BAD_FIELD:
            payload = bad_field_payload(template, serial)
        elif fault.kind is FaultKind.FUTURE_TIME:
            payload = future_time_payload(template)
        elif fault.kind is FaultKind.HOSTILE_SYMBOL:
            payload = hostile_payload(template)
            symbol = HOSTILE_SYMBOL
        else:
            payload = huge_payload(template, fault.size)
        data = encode_json(payload)
        if not own and session.all_market:
            return session.frame(ALL_MARKET_STREAM, array_json([data]))
        return session.frame(stream_name(symbol), data)
