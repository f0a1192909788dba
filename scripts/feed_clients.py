"""The clients of ``scripts/compare_clients.py``: how each one is started on the feed.

The bare aiohttp clients (``bare_client.py``), the floor of a durable recorder
(``floor_client.py``), the recorder (``recorder run`` with the
defaults), and the peers the issue names, run when their package imports
(``pip install -e '.[bench]'``): ``peer_cryptofeed.py`` and ``peer_unicorn.py``, each module's
docstring saying what it bypasses to point its library at the local feed.
"""

import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark import PROJECT_ROOT, RECORDER_COMMAND  # scripts/ is on sys.path

from recorder.ingest.connection import combined_stream_url
from recorder.simulate.config import DEFAULT_SYMBOLS

SCRIPTS = Path(__file__).resolve().parent
BARE_CLIENT = SCRIPTS / "bare_client.py"
FLOOR_CLIENT = SCRIPTS / "floor_client.py"
SYMBOLS = DEFAULT_SYMBOLS
"""The feed's contracts: the simulator's ten default ones."""


@dataclass(frozen=True, slots=True)
class Client:
    """One client of the comparison.

    Attributes:
        name: its label in the table.
        command: its command line, from the feed's base URL and the run's directory.
        ends_at_exit: the clock stops at its exit (the recorder) rather than at the close.
        ends_at_report: the clock stops when it prints its count, if that is after the close
            (a peer whose library queues frames past the close).
        cwd: its working directory: another commit's tree runs that commit's recorder.
    """

    name: str
    command: Callable[[str, Path], list[str]]
    ends_at_exit: bool = False
    ends_at_report: bool = False
    cwd: Path = PROJECT_ROOT


def bare_command(*flags: str) -> Callable[[str, Path], list[str]]:
    """The command line of ``bare_client.py`` with ``flags``."""

    def command(base_url: str, directory: Path) -> list[str]:
        del directory
        return [sys.executable, str(BARE_CLIENT), combined_stream_url(base_url, SYMBOLS), *flags]

    return command


def floor_command(*flags: str) -> Callable[[str, Path], list[str]]:
    """The command line of ``floor_client.py`` with ``flags``, its files in the run's directory."""

    def command(base_url: str, directory: Path) -> list[str]:
        url = combined_stream_url(base_url, SYMBOLS)
        return [sys.executable, str(FLOOR_CLIENT), url, str(directory), *flags]

    return command


def recorder_command(base_url: str, directory: Path) -> list[str]:
    """``recorder run`` on the feed, its dataset in ``directory``."""
    return [
        *RECORDER_COMMAND,
        "run",
        "--url",
        base_url,
        "--symbols",
        ",".join(SYMBOLS),
        "--root",
        str(directory / "data"),
        "--instance-id",
        "bench",
    ]


def cryptofeed_command(base_url: str, directory: Path) -> list[str]:
    """``peer_cryptofeed.py`` on the feed; its exchangeInfo from the same server."""
    rest_base = base_url.replace("ws://", "http://", 1).removesuffix("/market")
    return [
        sys.executable,
        str(SCRIPTS / "peer_cryptofeed.py"),
        combined_stream_url(base_url, SYMBOLS),
        "--rest",
        rest_base,
        "--log",
        str(directory / "cryptofeed.log"),
    ]


def unicorn_command(base_url: str, directory: Path) -> list[str]:
    """``peer_unicorn.py`` on the feed."""
    del directory
    return [
        sys.executable,
        str(SCRIPTS / "peer_unicorn.py"),
        combined_stream_url(base_url, SYMBOLS),
    ]


@dataclass(frozen=True, slots=True)
class Peer:
    """Another library's client, run when its package imports.

    Attributes:
        package: its distribution, as pip names it.
        module: the module it imports.
        label: its label in the table, before the version.
        command: as :attr:`Client.command`.
    """

    package: str
    module: str
    label: str
    command: Callable[[str, Path], list[str]]

    def installed(self) -> bool:
        """Whether the package imports in this interpreter (the clients run with it)."""
        return importlib.util.find_spec(self.module) is not None

    def client(self) -> Client:
        """The client of the comparison, its label with the installed version."""
        version = importlib.metadata.version(self.package)
        return Client(f"{self.package} {version} {self.label}", self.command, ends_at_report=True)


PEERS = (
    Peer("cryptofeed", "cryptofeed", "(Decimal Candle per update)", cryptofeed_command),
    Peer(
        "unicorn-binance-websocket-api",
        "unicorn_binance_websocket_api",
        "(stream_buffer, raw frames)",
        unicorn_command,
    ),
)
"""The clients the issue names as optional; ``pip install -e '.[bench]'`` installs them."""

CLIENTS = (
    Client("bare aiohttp, counting frames", bare_command()),
    Client("bare aiohttp + json.loads", bare_command("--json")),
    Client(
        "floor: aiohttp, msgspec, log, Parquet (no checks)", floor_command(), ends_at_report=True
    ),
    Client(
        "floor with Arrow's JSON reader (no checks)",
        floor_command("--arrow-json"),
        ends_at_report=True,
    ),
    Client("recorder run (received, logged, sealed)", recorder_command, ends_at_exit=True),
    *(peer.client() for peer in PEERS if peer.installed()),
)
MISSING_PEERS = tuple(peer.package for peer in PEERS if not peer.installed())
"""The peers whose package does not import: listed as "not installed" in the table."""
