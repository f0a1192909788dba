"""Reading a running recorder's ``/metrics`` and ``/healthz``, for ``recorder status``.

Plain blocking HTTP (the command does nothing else meanwhile); the exposition is parsed by
``prometheus_client.parser`` into the families :func:`~recorder.ops.status.read_metrics` reads,
the same ones the daemon reads from its own registry.
"""

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from recorder.ops.status import MetricsReading, read_metrics

__all__ = ["DEFAULT_STATUS_URL", "Health", "Scrape", "Unreachable", "base_url", "scrape"]

DEFAULT_STATUS_URL: Final = "http://127.0.0.1:9464"
"""The default ``[metrics] address``, as a URL."""

REQUEST_TIMEOUT: Final = 5.0
"""Seconds allowed for each request: a recorder answers in milliseconds, even when loaded."""


class Unreachable(Exception):  # noqa: N818 - reads as what happened: the endpoint is unreachable
    """The metrics endpoint cannot be read; the message says why, for the operator."""


@dataclass(frozen=True, slots=True)
class Health:
    """What ``/healthz`` answered.

    Attributes:
        ok: ``True`` for 200 ``{"status": "ok"}``; ``False`` for unhealthy (503); ``None`` when
            it gave no verdict (not served, not JSON).
        body: the JSON body (reasons, connections delivering...), empty when none.
    """

    ok: bool | None
    body: Mapping[str, object] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        """What ``/healthz`` says is wrong."""
        reasons = self.body.get("reasons")
        return [str(reason) for reason in reasons] if isinstance(reasons, list) else []


@dataclass(frozen=True, slots=True)
class Scrape:
    """One reading of a running recorder: its metrics and its health."""

    reading: MetricsReading
    health: Health


def base_url(url: str) -> str:
    """Check ``url`` is an ``http(s)://host[:port][/prefix]`` URL; return it without the end ``/``.

    Raises:
        ValueError: it is not (the message says what was expected).

    >>> base_url("http://127.0.0.1:9464/")
    'http://127.0.0.1:9464'
    """
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query:
        msg = (
            f"{url!r} is not a metrics URL: expected http://HOST:PORT, such as "
            f"{DEFAULT_STATUS_URL} (the recorder's [metrics] address)"
        )
        raise ValueError(msg)
    return url.strip().rstrip("/")


def scrape(url: str, timeout: float = REQUEST_TIMEOUT) -> Scrape:
    """Read ``/metrics`` and ``/healthz`` under ``url`` (checked by :func:`base_url`).

    Raises:
        Unreachable: ``/metrics`` cannot be read or parsed.
    """
    try:
        text = _get(f"{url}/metrics", timeout).decode("utf-8")
    except urllib.error.HTTPError as error:
        msg = f"{url}/metrics answered HTTP {error.code}: is this a recorder's metrics address?"
        raise Unreachable(msg) from error
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        msg = f"cannot reach {url}/metrics: {reason} (is the recorder running, with [metrics] "
        msg += "address set to this host and port?)"
        raise Unreachable(msg) from error
    try:
        reading = read_metrics(text_string_to_metric_families(text))
    except (ValueError, KeyError, TypeError) as error:
        msg = f"{url}/metrics is not a recorder's Prometheus exposition: {error}"
        raise Unreachable(msg) from error
    return Scrape(reading, _health(url, timeout))


def _health(url: str, timeout: float) -> Health:
    try:
        body = _get(f"{url}/healthz", timeout)
    except urllib.error.HTTPError as error:
        # 503 is the unhealthy verdict, its body the reasons.
        body = error.read() if error.code == 503 else b""
    except (OSError, ValueError):
        return Health(None)
    try:
        document = json.loads(body)
    except ValueError:
        return Health(None)
    if not isinstance(document, dict):
        return Health(None)
    verdict = {"ok": True, "unhealthy": False}.get(str(document.get("status")))
    return Health(verdict, document)


def _get(url: str, timeout: float) -> bytes:
    # The scheme was checked by base_url: http or https only.
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        body: bytes = response.read()
    return body
