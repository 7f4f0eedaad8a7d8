"""The daemon against a real Mosquitto: alerts, poison payloads, broker restarts, clean stop."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_agent.service import SCORE_CHUNK, build_agent
from tests.conftest import correlated_series
from tests.integration.conftest import Broker, Recorder, RunningAgent, agent_config, publisher, wait_until


def _payloads(values: np.ndarray, start_ts: float) -> list[bytes]:
    return [
        json.dumps(
            {"ts": start_ts + i, "seq": i, "values": {f"s{c}": float(v[c]) for c in range(3)}}
        ).encode()
        for i, v in enumerate(values)
    ]


def _stats(recorder: Recorder, agent_id: str = "edge-1") -> dict[str, object]:
    found = recorder.json_on(f"edgegan/agent/{agent_id}/stats")
    return found[-1] if found else {}


def test_alert_for_an_injected_fault_and_none_for_normal_data(
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    watch = recorder("edgegan/#")
    agent = start_agent(agent_config(tiny_bundle, broker.port))
    faulty = correlated_series(260, seed=31)
    faulty[180:, 1] += 4 * faulty[:, 1].std()
    normal = correlated_series(260, seed=32)
    now = time.time() - 300
    device = publisher(broker.port)
    for a, b in zip(_payloads(faulty, now), _payloads(normal, now), strict=True):
        device.publish("sensors/pump-a/telemetry", a, qos=1)
        device.publish("sensors/pump-b/telemetry", b, qos=1)
    watch.wait_for(lambda ms: any(t == "edgegan/alert/pump-a" for t, _, _ in ms))
    watch.wait_for(lambda ms: _stats(watch).get("scored", 0) >= 2 * (260 - 31))
    alerts = watch.json_on("edgegan/alert/pump-a")
    assert alerts[0]["type"] == "start" and alerts[0]["device"] == "pump-a"
    assert alerts[0]["ts"] >= now + 180
    assert alerts[0]["score"] > alerts[0]["threshold"]
    assert alerts[0]["bundle_id"] == agent.service.pipeline.bundle_id
    assert {c["channel"] for c in alerts[0]["top_channels"]} >= {"s1"}
    # Severity names the strictest bundle level the alert's score reached ("alert" when none).
    threshold = agent.service.pipeline.threshold
    assert alerts[0]["peak_score"] == alerts[0]["score"]  # at the start, the peak is the score itself
    critical = threshold.levels["critical"].value
    assert alerts[0]["severity"] == ("critical" if alerts[0]["score"] > critical else "alert")
    assert watch.json_on("edgegan/alert/pump-b") == []
    assert any(t == "edgegan/state/pump-a" and p == b"anomalous" for t, p, _ in watch.messages)
    device.loop_stop()
    agent.shutdown()
    # Clean stop: retained offline status.
    late = recorder("edgegan/agent/edge-1/status", "edgegan/state/pump-a")
    late.wait_for(
        lambda ms: (
            ("edgegan/agent/edge-1/status", b"offline", True) in ms
            and ("edgegan/state/pump-a", b"anomalous", True) in ms
        )
    )


@pytest.mark.faults
def test_poison_payloads_are_counted_and_scoring_goes_on(
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent")
    watch = recorder("edgegan/agent/#")
    start_agent(agent_config(tiny_bundle, broker.port, stats={"interval_s": 0.5, "rejected_summary_s": 0.5}))
    device = publisher(broker.port)
    good = _payloads(correlated_series(80, seed=5), time.time() - 100)
    poison = {
        "sensors/p1/telemetry": [
            b"{broken",
            b'{"values": [NaN, 1, 2]}',
            b'{"values": [1, 2]}',
            b'{"values": {"s0": 1, "s1": 2}}',
            b'{"values": [1, 2, 3], "x": "' + b"y" * 4000 + b'"}',
            b'{"ts": 4102444800, "values": [1, 2, 3]}',
            b"[]",
            b"\xff\xfe",
        ],
        "sensors/bad.id/telemetry": [good[0]],
    }
    for i, payload in enumerate(good):
        device.publish("sensors/p1/telemetry", payload, qos=1)
        if i == 40:
            for topic, bad in poison.items():
                for item in bad:
                    device.publish(topic, item, qos=1)
            device.publish("sensors/p1/telemetry", payload, qos=1)  # a redelivered duplicate
    expected_scored = 80 - 31
    stats = watch.wait_for(
        lambda ms: (
            _stats(watch).get("scored", 0) >= expected_scored
            and sum(_stats(watch).get("rejected", {}).values()) >= 10
        )
    )
    assert stats
    rejected = _stats(watch)["rejected"]
    assert rejected == {
        "bad_json": 3,
        "wrong_channel_count": 1,
        "missing_channel": 1,
        "too_large": 1,
        "future_ts": 1,
        "not_object": 1,
        "duplicate": 1,
        "bad_device": 1,
    }, rejected
    assert _stats(watch)["scored"] == expected_scored
    # Per-device data quality: p1 sent 80 good readings, 8 poison payloads and 1 duplicate.
    health = _stats(watch)["device_health"]["p1"]  # type: ignore[index]
    assert health["received"] == 89
    assert health["rejected_rate"] == round(9 / 89, 4)
    assert health["missing_channel_rate"] == round(1 / 89, 4)
    assert "bad.id" not in _stats(watch)["device_health"]  # type: ignore[operator]
    assert watch.json_on("edgegan/agent/edge-1/rejected"), "rejections are published (rate-limited)"
    # The log says, at INFO: when a device's scoring starts, its first refusal with the reason (once), and
    # a periodic summary by reason and device.
    assert wait_until(lambda: any("readings refused in the last" in r.getMessage() for r in caplog.records))
    messages = [record.getMessage() for record in caplog.records]
    assert "device p1: first reading; scoring starts once 32 readings fill a window" in messages
    first_refusals = [m for m in messages if m.startswith("device p1: reading refused (")]
    assert len(first_refusals) == 1 and "further refusals are summarised every 0.5 s" in first_refusals[0]
    summaries = " ".join(m for m in messages if m.startswith("readings refused in the last"))
    assert "bad_json" in summaries and "p1 " in summaries and "bad_device" in summaries


@pytest.mark.faults
def test_agent_resumes_after_a_broker_restart(
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    agent = start_agent(agent_config(tiny_bundle, broker.port))
    payloads = _payloads(correlated_series(120, seed=8), time.time() - 200)
    device = publisher(broker.port)
    for payload in payloads[:60]:
        device.publish("sensors/r1/telemetry", payload, qos=1).wait_for_publish(5)
    wait_until(lambda: agent.service.stats.scored >= 60 - 31)
    assert agent.service.stats.scored == 60 - 31
    broker.stop()
    time.sleep(1.0)
    broker.start()
    assert agent.service.link.connected.wait(20), "agent did not reconnect"
    assert agent.service.link.connects == 2
    device.loop_stop()
    device = publisher(broker.port)
    status = "edgegan/agent/edge-1/status"
    # The agent announces itself once the broker confirms its subscriptions, which may be after this
    # subscriber's own: then "online" arrives live (retain flag clear), and a later subscriber is handed
    # the retained copy.
    recorder(status).wait_for(lambda ms: any(m[:2] == (status, b"online") for m in ms))
    recorder(status).wait_for(lambda ms: (status, b"online", True) in ms)
    for payload in payloads[60:]:
        device.publish("sensors/r1/telemetry", payload, qos=1).wait_for_publish(5)
    wait_until(lambda: agent.service.stats.scored >= 120 - 31)
    assert agent.service.stats.scored == 120 - 31
    device.loop_stop()


def test_prometheus_endpoint_reports_the_same_counters(
    tiny_bundle: Path,
    broker: Broker,
    start_agent: Callable[..., RunningAgent],
) -> None:
    import urllib.request

    from trainer.demo.broker import free_port

    port = free_port()
    agent = start_agent(
        agent_config(tiny_bundle, broker.port, stats={"interval_s": 0.5, "prometheus_port": port})
    )
    device = publisher(broker.port)
    for payload in _payloads(correlated_series(40, seed=3), time.time() - 100):
        device.publish("sensors/m1/telemetry", payload, qos=1).wait_for_publish(5)
    device.publish("sensors/m1/telemetry", b"{oops", qos=1).wait_for_publish(5)
    wait_until(lambda: agent.service.stats.received >= 41 and agent.service.stats.scored >= 9)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "edgegan_scored_total 9.0" in text
    assert 'edgegan_rejected_total{reason="bad_json"} 1.0' in text
    assert "edgegan_received_total 41.0" in text
    assert f'edgegan_bundle_info{{bundle_id="{agent.service.pipeline.bundle_id}"}} 1.0' in text
    assert f'edgegan_device_rejected_ratio{{device="m1"}} {round(1 / 41, 4)}' in text
    device.loop_stop()


def test_mqtt_311_connection_scores_readings(
    tiny_bundle: Path,
    broker: Broker,
    start_agent: Callable[..., RunningAgent],
) -> None:
    agent = start_agent(agent_config(tiny_bundle, broker.port, broker={"protocol": "3.1.1"}))
    device = publisher(broker.port)
    for payload in _payloads(correlated_series(40, seed=13), time.time() - 100):
        device.publish("sensors/v3/telemetry", payload, qos=1).wait_for_publish(5)
    wait_until(lambda: agent.service.stats.scored >= 40 - 31)
    assert agent.service.stats.scored == 40 - 31
    device.loop_stop()


def test_late_readings_within_the_reorder_depth_are_scored_in_order(
    tiny_bundle: Path,
    broker: Broker,
    start_agent: Callable[..., RunningAgent],
) -> None:
    agent = start_agent(agent_config(tiny_bundle, broker.port, ingest={"reorder_depth": 2}))
    payloads = _payloads(correlated_series(60, seed=14), time.time() - 100)
    for i in range(0, len(payloads) - 1, 2):  # every pair swapped: each odd reading arrives one early
        payloads[i], payloads[i + 1] = payloads[i + 1], payloads[i]
    payloads.append(payloads[10])  # and one redelivered long after
    device = publisher(broker.port)
    for payload in payloads:
        device.publish("sensors/late/telemetry", payload, qos=1).wait_for_publish(5)
    # 60 readings, 2 held back by the reorder stage, a window of 32: 60 - 2 - 31 windows.
    wait_until(
        lambda: agent.service.stats.scored >= 60 - 2 - 31 and sum(agent.service.stats.rejected.values())
    )
    assert agent.service.stats.scored == 60 - 2 - 31
    assert dict(agent.service.stats.rejected) == {"out_of_order": 1}
    device.loop_stop()


def test_a_silent_device_turns_offline_and_back_online(
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    """The sequence must be exact. It failed now and then under loaded test runs: the first session's
    re-announcement came after the device's first readings and announced it online twice (forced in the
    next test). offline_after_s stays 3 s so that a stalled publisher cannot flap the device either."""
    watch = recorder("edgegan/device/+/availability")
    start_agent(agent_config(tiny_bundle, broker.port, ingest={"offline_after_s": 3.0}))
    device = publisher(broker.port)
    payloads = _payloads(correlated_series(10, seed=15), time.time() - 50)
    topic = "edgegan/device/quiet/availability"
    for payload in payloads[:3]:
        device.publish("sensors/quiet/telemetry", payload, qos=1).wait_for_publish(5)
    watch.wait_for(lambda ms: [p for t, p, _ in ms if t == topic] == [b"online", b"offline"])
    for payload in payloads[3:5]:
        device.publish("sensors/quiet/telemetry", payload, qos=1).wait_for_publish(5)
    watch.wait_for(lambda ms: [p for t, p, _ in ms if t == topic] == [b"online", b"offline", b"online"])
    late = recorder(topic)  # a dashboard connecting now gets the retained state
    late.wait_for(lambda ms: ms == [(topic, b"online", True)])
    device.loop_stop()


def test_readings_taken_with_the_first_session_announce_their_device_once(
    tiny_bundle: Path, broker: Broker, recorder: Callable[..., Recorder]
) -> None:
    """The scoring loop may first run after the broker confirmed the subscriptions and readings already
    wait in the inbox (a loaded machine delays its thread). The session's re-announcement must come before
    those readings are handled, or the device they make online is announced online twice: the sequence the
    offline test above saw as a flake. Driven step by step here, so the order is forced, not hoped for."""
    watch = recorder("edgegan/device/+/availability")
    service = build_agent(agent_config(tiny_bundle, broker.port, ingest={"offline_after_s": 30.0}))
    service.link.start()
    device = publisher(broker.port)
    try:
        assert service.link.connected.wait(10), "agent did not connect"
        for payload in _payloads(correlated_series(3, seed=18), time.time() - 10):
            device.publish("sensors/early/telemetry", payload, qos=1).wait_for_publish(5)
        assert wait_until(lambda: service.link.inbox_depth() == 3)
        for _ in range(5):
            service.step()
        watch.wait_for(lambda ms: len(ms) >= 1)
        time.sleep(0.5)  # room for a second announcement to arrive
        assert [(t, p) for t, p, _ in watch.messages] == [("edgegan/device/early/availability", b"online")]
    finally:
        device.loop_stop()
        service.link.stop()
        service.publisher.close()


@pytest.mark.faults
def test_device_state_is_bounded_and_silent_devices_are_forgotten_with_their_retained_topics(
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    """A flood of new device ids stops at ingest.max_devices (counted as device_limit); devices silent past
    forget_after_s are evicted, their retained availability cleared, and room is made for new ones."""
    config = agent_config(
        tiny_bundle, broker.port, ingest={"max_devices": 4, "forget_after_s": 1.5, "offline_after_s": 0.5}
    )
    agent = start_agent(config)
    device = publisher(broker.port)
    payload = _payloads(correlated_series(1, seed=16), time.time() - 20)[0]
    for index in range(7):
        device.publish(f"sensors/flood-{index}/telemetry", payload, qos=1).wait_for_publish(5)
    device.publish("sensors/garbage-1/telemetry", b"not json", qos=1).wait_for_publish(5)
    assert wait_until(lambda: agent.service.stats.rejected["device_limit"] == 3)
    assert wait_until(lambda: agent.service.stats.rejected["bad_json"] == 1)
    assert agent.service.snapshot()["devices_tracked"] == 4
    assert len(agent.service.ingest.health) == 4, "refused and garbage-only ids must not get health state"
    assert wait_until(lambda: agent.service.evicted == 4)
    assert len(agent.service.ingest.health) == 0
    late = recorder("edgegan/device/+/availability")  # retained availability of evicted devices is gone
    time.sleep(0.5)
    assert late.messages == []
    fresh = _payloads(correlated_series(1, seed=17), time.time() - 10)[0]
    device.publish("sensors/newcomer/telemetry", fresh, qos=1).wait_for_publish(5)
    assert wait_until(lambda: agent.service.snapshot()["devices_tracked"] == 1)
    assert agent.service.stats.rejected["device_limit"] == 3
    device.loop_stop()


def test_batched_messages_are_scored_reading_by_reading_and_bad_readings_refused_by_index(
    tiny_bundle: Path,
    broker: Broker,
    start_agent: Callable[..., RunningAgent],
) -> None:
    agent = start_agent(agent_config(tiny_bundle, broker.port, ingest={"max_payload_bytes": 65536}))
    values = correlated_series(80, seed=15)
    start = time.time() - 100
    rows = [
        {"ts": start + i, "seq": i, "values": {f"s{c}": float(v[c]) for c in range(3)}}
        for i, v in enumerate(values[:40])
    ]
    rows[5]["values"]["s1"] = "broken"  # type: ignore[index]
    rows[6]["ts"] = start - 7200  # stale: older than ingest.max_age_s
    columnar = {
        "ts": [start + 40 + i for i in range(40)],
        "values": {f"s{c}": [float(v[c]) for v in values[40:]] for c in range(3)},
    }
    device = publisher(broker.port)
    device.publish("sensors/batch/telemetry", json.dumps(rows), qos=1).wait_for_publish(5)
    device.publish("sensors/batch/telemetry", json.dumps(columnar), qos=1).wait_for_publish(5)
    # 78 usable readings of one device, a window of 32: 78 - 31 windows, both messages acknowledged.
    wait_until(lambda: agent.service.stats.scored >= 78 - 31)
    assert agent.service.stats.scored == 78 - 31
    assert dict(agent.service.stats.rejected) == {"non_numeric": 1, "stale_ts": 1}
    assert agent.service.stats.received == 2
    # Health rates are per reading: 2 refused of the 80 the two messages held (per message it read 1.0).
    assert agent.service.ingest.health.snapshot(10)["batch"]["rejected_rate"] == round(2 / 80, 4)
    device.loop_stop()


def test_score_per_message_publishes_each_batch_newest_score_and_still_scores_every_reading(
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    watch = recorder("scores/#")
    topics = {"score": "scores/{device}", "score_per": "message"}
    agent = start_agent(
        agent_config(tiny_bundle, broker.port, topics=topics, ingest={"max_payload_bytes": 65536})
    )
    values = correlated_series(100, seed=18)
    start = time.time() - 200
    device = publisher(broker.port)
    for first in range(0, 100, 20):  # five messages of 20 readings each
        batch = {
            "ts": [start + i for i in range(first, first + 20)],
            "seq": list(range(first, first + 20)),
            "values": {f"s{c}": [float(v[c]) for v in values[first : first + 20]] for c in range(3)},
        }
        device.publish("sensors/batch/telemetry", json.dumps(batch), qos=1).wait_for_publish(5)
    wait_until(lambda: agent.service.stats.scored >= 100 - 31)
    # A window of 32: the first is due in the second message. Every reading from then on is scored and
    # decided, but only each message's newest reading has its score published.
    assert agent.service.stats.scored == 100 - 31
    watch.wait_for(lambda ms: len(ms) >= 4)
    time.sleep(0.5)
    scores = watch.json_on("scores/batch")
    assert [s["seq"] for s in scores] == [39, 59, 79, 99]
    assert all(s["score"] >= 0 and s["ts"] == start + s["seq"] for s in scores)
    device.loop_stop()


def test_a_large_batch_is_scored_in_bounded_backend_calls(
    tiny_bundle: Path,
    broker: Broker,
    start_agent: Callable[..., RunningAgent],
) -> None:
    agent = start_agent(agent_config(tiny_bundle, broker.port, ingest={"max_payload_bytes": 262144}))
    scorer = agent.service.pipeline.scorer
    sizes: list[int] = []
    real_score = scorer.score

    def recording(windows: np.ndarray) -> object:
        sizes.append(len(windows))
        return real_score(windows)

    scorer.score = recording  # type: ignore[method-assign]
    values = correlated_series(700, seed=19)
    start = time.time() - 1000
    batch = {
        "ts": [start + i for i in range(700)],
        "values": {f"s{c}": [float(v[c]) for v in values] for c in range(3)},
    }
    device = publisher(broker.port)
    device.publish("sensors/big/telemetry", json.dumps(batch), qos=1).wait_for_publish(5)
    wait_until(lambda: agent.service.stats.scored >= 700 - 31)
    # Every reading is scored, in backend calls of at most SCORE_CHUNK windows (the backend's working
    # memory and a step's first decisions do not wait on the whole message).
    assert agent.service.stats.scored == 700 - 31
    assert sum(sizes) == 700 - 31 and max(sizes) <= SCORE_CHUNK and len(sizes) >= 6
    device.loop_stop()


def test_a_stop_finishes_the_inbox_without_waiting_for_a_live_fleet_to_fall_silent(
    tiny_bundle: Path,
    broker: Broker,
    start_agent: Callable[..., RunningAgent],
) -> None:
    agent = start_agent(agent_config(tiny_bundle, broker.port))
    device = publisher(broker.port)
    publishing = threading.Event()
    publishing.set()

    def publish_forever() -> None:
        payloads = _payloads(correlated_series(200, seed=16), time.time() - 100)
        i = 0
        while publishing.is_set():
            device.publish(f"sensors/live{i % 20}/telemetry", payloads[i % 200], qos=1)
            i += 1
            time.sleep(0.0005)

    feeder = threading.Thread(target=publish_forever, daemon=True)
    feeder.start()
    try:
        wait_until(lambda: agent.service.stats.received >= 500)
        started = time.monotonic()
        agent.shutdown()  # asserts the loop stopped within 15 s while the fleet keeps publishing
        assert time.monotonic() - started < 5
    finally:
        publishing.clear()
        feeder.join(5)
        device.loop_stop()
