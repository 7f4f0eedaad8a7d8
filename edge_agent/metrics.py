"""Prometheus endpoint: the same counters as the stats topic, read at scrape time (no double bookkeeping)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]


class _AgentCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        data = self._snapshot()
        for name, help_text in (
            ("received", "telemetry messages received"),
            ("scored", "windows scored"),
            ("alerts", "alerts started"),
        ):
            yield CounterMetricFamily(f"edgegan_{name}", help_text, value=float(data[name]))
        rejected = CounterMetricFamily("edgegan_rejected", "readings rejected, by reason", labels=["reason"])
        for reason, count in sorted(data["rejected"].items()):
            rejected.add_metric([reason], float(count))
        yield rejected
        latency = GaugeMetricFamily(
            "edgegan_latency_ms", "receive-to-decision latency over recent readings", labels=["quantile"]
        )
        for key, value in data["latency_ms"].items():
            latency.add_metric([f"0.{key[1:]}"], float(value))
        yield latency
        yield GaugeMetricFamily("edgegan_devices", "devices with a window", value=float(data["devices"]))
        yield GaugeMetricFamily(
            "edgegan_inbox_overflow",
            "messages taken past the inbox bound after the scoring loop stalled for half a keepalive",
            value=float(data["inbox_overflow"]),
        )
        yield from _device_health(data["device_health"])
        if "spool" in data:
            yield from _spool(data["spool"])
        info = GaugeMetricFamily("edgegan_bundle_info", "the model bundle in use", labels=["bundle_id"])
        info.add_metric([str(data["bundle_id"])], 1.0)
        yield info


def _device_health(health: dict[str, dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
    """Per-device data quality and drift (the worst devices first, bounded by stats.max_devices_reported)."""
    for key, name, help_text in (
        ("rejected_rate", "edgegan_device_rejected_ratio", "share of the device's messages rejected"),
        ("missing_channel_rate", "edgegan_device_missing_channel_ratio", "share missing a channel"),
        ("drift", "edgegan_device_score_drift", "recent share of scores above calibration p90, over 0.10"),
    ):
        family = GaugeMetricFamily(name, help_text, labels=["device"])
        for device, values in health.items():
            if values.get(key) is not None:
                family.add_metric([device], float(values[key]))
        yield family


def _spool(spool: dict[str, Any]) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    yield GaugeMetricFamily("edgegan_spool_messages", "messages stored", value=float(spool["stored"]))
    yield GaugeMetricFamily("edgegan_spool_waiting", "stored, not yet sent", value=float(spool["waiting"]))
    yield GaugeMetricFamily("edgegan_spool_bytes", "payload bytes stored", value=float(spool["bytes"]))
    dropped = CounterMetricFamily("edgegan_spool_dropped", "messages the spool dropped", labels=["reason"])
    for reason, count in sorted(spool["dropped"].items()):
        dropped.add_metric([reason], float(count))
    yield dropped


def serve_metrics(port: int, address: str, snapshot: Snapshot) -> Callable[[], None]:
    """Start the scrape endpoint on a background thread; returns the function that stops it."""
    registry = CollectorRegistry()
    registry.register(_AgentCollector(snapshot))
    server, _thread = start_http_server(port, addr=address, registry=registry)
    log.info("Prometheus metrics on http://%s:%d/metrics", address, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop
