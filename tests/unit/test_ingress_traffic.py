"""Request counters from Caddy's per-service access logs (orchestrator/ingress/traffic.py): how the logging is
configured, and how a window is read from the files, rolled ones included. Through a real Caddy:
tests/unit/test_ingress_caddy.py and tests/e2e/test_ingress.py."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.ingress import Route, render
from orchestrator.ingress.traffic import WINDOW_S, access_dir, prune, read_traffic, summarize
from orchestrator.settings import Settings

NOW = 1_800_000_000.0


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, base_domain="apps.example.com", ingress_https_port=8443)


def _write(path: Path, entries: list[tuple[float, int, float]], tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"ts": ts, "logger": "x", "duration": d, "status": s}) for ts, s, d in entries]
    path.write_text("".join(line + "\n" for line in lines) + tail)


def test_a_window_counts_requests_5xx_and_the_median_of_what_lies_inside_it() -> None:
    entries = [
        (NOW - WINDOW_S - 1, 500, 9.0),  # before the window
        (NOW - 200, 200, 0.002),
        (NOW - 100, 502, 0.004),
        (NOW - 10, 503, 0.001),
        (NOW - 5, 200, 0.003),
        (NOW + 5, 500, 9.0),  # after it
    ]
    traffic = summarize(entries, NOW)
    assert (traffic.requests, traffic.errors_5xx, traffic.p50_ms) == (4, 2, 2.5)
    assert traffic.window_s == WINDOW_S and traffic.since == datetime.fromtimestamp(NOW - WINDOW_S, UTC)
    empty = summarize([], NOW)
    assert (empty.requests, empty.errors_5xx, empty.p50_ms) == (0, 0, None)


def test_a_service_without_a_log_yet_has_zero_counters(tmp_path: Path) -> None:
    traffic = read_traffic(_settings(tmp_path), "svc_none", NOW)
    assert (traffic.requests, traffic.errors_5xx, traffic.p50_ms) == (0, 0, None)


def test_only_the_services_own_file_is_read_and_a_line_being_written_is_skipped(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _write(access_dir(settings) / "svc_mine.log", [(NOW - 3, 200, 0.01)], tail='{"ts": 18000')
    _write(access_dir(settings) / "svc_other.log", [(NOW - 3, 500, 0.5)] * 7)
    mine = read_traffic(settings, "svc_mine", NOW)
    assert (mine.requests, mine.errors_5xx, mine.p50_ms) == (1, 0, 10.0)


def test_a_window_that_crosses_a_roll_reads_the_rolled_file_too(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    directory = access_dir(settings)
    _write(directory / "svc_a-2027-01-15T08-00-00.000.log", [(NOW - 400, 200, 0.1), (NOW - 250, 500, 0.1)])
    _write(directory / "svc_a.log", [(NOW - 60, 200, 0.1), (NOW - 1, 200, 0.1)])
    traffic = read_traffic(settings, "svc_a", NOW)
    assert (traffic.requests, traffic.errors_5xx) == (3, 1)
    assert traffic.since == datetime.fromtimestamp(NOW - WINDOW_S, UTC)  # the rolled file reaches back far enough


def test_when_older_entries_rolled_away_the_counters_say_from_when_they_count(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    directory = access_dir(settings)
    _write(directory / "svc_a-2027-01-15T08-00-00.000.log", [(NOW - 120, 200, 0.1), (NOW - 90, 200, 0.1)])
    _write(directory / "svc_a.log", [(NOW - 1, 200, 0.1)])
    traffic = read_traffic(settings, "svc_a", NOW)
    assert traffic.requests == 3 and traffic.since == datetime.fromtimestamp(NOW - 120, UTC)


def test_each_routed_service_gets_a_logger_and_file_of_its_own_its_domains_included(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    routes = [
        Route("web-acme.apps.example.com", "web", "127.0.0.1:4000", "running", service_id="svc_1"),
        Route("shop.example.com", "web", "127.0.0.1:4000", "running", custom=True, service_id="svc_1"),
        Route("web-rival.apps.example.com", "web", None, "stopped", service_id="svc_2"),
    ]
    config = render(settings, routes, tmp_path / "caddy")
    logs = config["apps"]["http"]["servers"]["agenthost"]["logs"]
    assert logs["skip_unmapped_hosts"] is True  # the 404 page and unknown hosts are not logged at all
    assert logs["logger_names"] == {
        "web-acme.apps.example.com": "svc-svc_1",
        "web-acme.apps.example.com:8443": "svc-svc_1",
        "shop.example.com": "svc-svc_1",
        "shop.example.com:8443": "svc-svc_1",
        "web-rival.apps.example.com": "svc-svc_2",
        "web-rival.apps.example.com:8443": "svc-svc_2",
    }
    defined = config["logging"]["logs"]
    assert defined["default"] == {"exclude": ["http.log.access"]}  # access entries go to their files only
    for sid in ("svc_1", "svc_2"):
        log = defined[f"svc-{sid}"]
        assert log["include"] == [f"http.log.access.svc-{sid}"]
        assert log["writer"]["filename"] == str(tmp_path / "ingress" / "access" / f"{sid}.log")
        assert log["writer"]["roll_keep"] == 1 and log["writer"]["roll_size_mb"] > 0  # bounded on disk
        assert {"request", "resp_headers"} <= set(log["encoder"]["fields"])  # no client address, no headers
    assert render(settings, list(reversed(routes)), tmp_path / "caddy") == config


def test_the_files_of_services_without_a_route_are_pruned_once_quiet(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    directory = access_dir(settings)
    names = ("svc_kept.log", "svc_kept-2027-01-15T08-00-00.000.log", "svc_gone.log", "svc_gone-2027.log", "svc_new.log")
    for name in names:
        _write(directory / name, [(NOW - 120, 200, 0.1)])
        if name != "svc_new.log":  # just written: a service created after the routes were read may own it
            os.utime(directory / name, (NOW - 120, NOW - 120))
        else:
            os.utime(directory / name, (NOW - 10, NOW - 10))
    assert prune(settings, {"svc_kept"}, NOW) == 2
    assert sorted(p.name for p in directory.iterdir()) == [
        "svc_kept-2027-01-15T08-00-00.000.log",
        "svc_kept.log",
        "svc_new.log",
    ]
    assert prune(_settings(tmp_path / "elsewhere"), set(), NOW) == 0
