"""The Markdown table of ``whole_market_scale.py``'s figures (one measure a row)."""

from typing import Any

from benchmark import number, ratio  # scripts/ is on sys.path when a script runs

CONTROL = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS")
STARTUP_S = 30.0
"""Seconds after the recorder's start counted as its start-up."""


def cores(value: float) -> str:
    """A CPU figure in cores as a share of one core: ``12.3 %``."""
    return f"{number(value * 100)} %"


def seconds(figures: dict[str, float]) -> str:
    """A spread of seconds: ``p50 / p99 / max s``."""
    return " / ".join(number(figures[k]) for k in ("p50", "p99", "max")) + " s"


def window_rows(label: str, w: dict[str, Any]) -> list[str]:
    """The rows of one steady window."""
    if not w:
        return [f"| {label} | (too short) |"]
    c, r, b = w["cores"], w["recorders"]["recorder"], w["recorders"]["baseline"]
    return [
        f"| {label}: length | {number(w['seconds'])} s |",
        f"| {label}: recorder CPU, share of one core: symbols = all / baseline (ratio) | "
        f"{cores(c['recorder'])} / {cores(c['baseline'])} "
        f"({ratio(c['recorder'], c['baseline'])}) |",
        f"| {label}: recorder CPU per event recorded: symbols = all / baseline (ratio) | "
        f"{number(r['us_per_event'])} / {number(b['us_per_event'])} µs "
        f"({ratio(r['us_per_event'], b['us_per_event'])}) |",
        f"| {label}: CPU of the simulators / the machine (2 CPUs) / the rest | "
        f"{cores(c['simulator'])} + {cores(c['baseline simulator'])} / {cores(c['machine'])} / "
        f"{cores(c['rest'])} |",
        f"| {label}: events per second: delivered / recorded / recorded by the baseline | "
        f"{number(w['delivered_per_s'])} / {number(r['recorded_per_s'])} / "
        f"{number(b['recorded_per_s'])} |",
        f"| {label}: simulator ticks per second (due 0.5) | {number(w['ticks_per_s'])} |",
        f"| {label}: RSS median, symbols = all / baseline (ratio) | "
        f"{number(r['rss_median_mib'])} / {number(b['rss_median_mib'])} MiB "
        f"({ratio(r['rss_median_mib'], b['rss_median_mib'])}) |",
        f"| {label}: RSS slope, symbols = all / baseline | "
        f"{number(r['rss_slope_mib_per_hour'])} / {number(b['rss_slope_mib_per_hour'])} MiB/hour |",
    ]


def agreement_row(label: str, a: dict[str, Any]) -> str:
    """One row comparing the simulator's streams, exchangeInfo and the recorder's belief."""
    same = a["streams_per_connection"] == a["recorder_believes_per_connection"]
    return (
        f"| {label}: streams carried (simulator) / TRADING PERPETUAL listed / recorder's "
        f"recorded_symbols; the same set; streams on two connections | {a['carried']} / "
        f"{a['expected']} / {number(a['recorder_recorded_symbols'])}; "
        f"{'yes' if a['carried_equals_expected'] else 'NO'}; {a['carried_twice']} |\n"
        f"| {label}: streams per connection, simulator / recorder's log; connections, simulator /"
        f" recorder's metric | {a['streams_per_connection']} / "
        f"{a['recorder_believes_per_connection']} ({'equal' if same else 'DIFFERENT'}); "
        f"{a['simulator_open_connections']} / {number(a['recorder_open_connections'])} |"
    )


def report(s: dict[str, Any]) -> str:
    """Render the figures as one Markdown table."""
    p, up, b, w = s["plan"], s["startup"], s["burst"], s["whole_run"]
    methods = {m: b["control"]["by_method"].get(m, 0) for m in CONTROL}
    lines = [
        f"## The whole market: {p['contracts']} contracts, symbols = all, speed 1, "
        f"{number(w['seconds'])} s\n",
        f"Machine: {s['machine']}\n",
        "| measure | value |",
        "|---|---|",
        f"| ready (first event durable) after start | {number(s['ready_after_s'])} s |",
        f"| connections after {STARTUP_S:.0f} s: simulator / recorder's metric | "
        f"{up['connections_simulator']} / {number(up['connections_recorder'])} |",
        f"| start-up ({STARTUP_S:.0f} s): control messages by method; per connection per second;"
        f" peak in any second | {up['control']['by_method'] or 'none'}; "
        f"{number(up['control']['per_second_per_connection'])}; "
        f"{up['control']['peak_per_second']} |",
        f"| start-up ({STARTUP_S:.0f} s): REST requests | {up['rest_requests']} |",
        *window_rows("steady before the burst", s["steady"]),
        f"| burst: {p['listed']} listed + {p['delisted']} delisted at once: control messages "
        f"({', '.join(CONTROL)}) in {number(p['burst_window'])} s | "
        f"{' / '.join(str(v) for v in methods.values())} |",
        f"| burst: peak control messages in any second on one connection (limit 5) | "
        f"{b['control']['peak_per_second']} |",
        f"| burst: connections opened | {b['connections_opened']} |",
        f"| burst: listing to the recorder's log line taking it in, p50 / p99 / max | "
        f"{seconds(b['taken_in_after_listing_s'])} |",
        f"| burst: listing to the first recorded row of each new contract, p50 / p99 / max;"
        f" recorded | {seconds(b['first_row_after_listing_s'])}; "
        f"{b['new_recorded']} of {p['listed']} |",
        f"| burst: delisting to no connection carrying it (1 s samples) | "
        f"{seconds(b['unsubscribed_after_delisting_s'])} |",
        *window_rows("steady after the burst", s["after_burst"]),
        agreement_row("before the burst", s["agreement_before_burst"]),
        agreement_row("at the end", s["agreement_at_end"]),
        f"| whole run: requests received by method; simulator's peak per second on a connection"
        f" | {w['requests_by_method'] or 'none'}; {w['simulator_peak_requests_per_second']} |",
        f"| whole run: exchangeInfo requests per minute (the recorder); REST requests (this "
        f"script's 2 readings included) | "
        f"{number(w['exchange_info_per_minute'])}; {w['rest_requests']} |",
        f"| whole run: connections ever opened | {w['connections_opened']} |",
        f"| whole run: RSS peak sampled / VmHWM: symbols = all; baseline | "
        f"{number(w['rss_peak_mib'])} / {number(w['rss_hwm_mib'])}; "
        f"{number(w['baseline_rss_peak_mib'])} / {number(w['baseline_rss_hwm_mib'])} MiB |",
        f"| events delivered / rows / duplicates / delivered not recorded | {w['delivered']:,} /"
        f" {w['rows']:,} / {w['duplicates']} / {w['delivered_not_recorded']} |",
        f"| rows of the contracts to leave out (delivery, not trading) | "
        f"{w['recorded_of_excluded']} |",
        f"| gap log by cause; `recorder verify` exit | {w['gaps'] or 'empty'}; "
        f"{w['verify_exit']} ({' '.join(w['verify_tail'])}) |",
        f"| SIGTERM: exit; time to exit; the baseline's exit | {w['exit']}; "
        f"{number(w['stop_s'])} s; {w['baseline_exit']} |",
        f"| recorder log lines above info | {w['warnings']} |",
    ]
    return "\n".join(lines)
