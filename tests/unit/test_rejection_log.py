"""The rejection log's memory stays bounded whatever ids a flood of refused readings carries."""

from __future__ import annotations

from edge_agent.rejection_log import OTHER_DEVICES, RejectionLog


def test_a_flood_of_new_ids_is_counted_in_full_but_remembered_only_up_to_the_bound() -> None:
    log = RejectionLog(interval_s=60.0, max_devices_told=100)
    for i in range(5000):
        log.record(f"flood{i}", "device_limit", "too many devices", now=0.0)
    summary = log.summary()
    assert summary.startswith("device_limit 5000 (")
    assert f"{OTHER_DEVICES} 4900" in summary
    assert len(log._counts["device_limit"]) == 101  # 100 named devices and one bucket
