"""agent_throughput's results keep each section's own measurement date across chained `--only` runs."""

from __future__ import annotations

from benchmarks.agent_throughput import section_dates


def test_a_chain_of_only_runs_keeps_the_carried_sections_dates() -> None:
    first_only_run = {
        "machine": {"measured_at": "2026-12-06T17:59:19+00:00"},
        "sections_measured_at": {
            "drain": "2026-12-04T08:19:08+00:00",
            "paced": "2026-12-06T17:59:19+00:00",
        },
    }
    dates = section_dates(first_only_run, carried=["drain"], measured=["paced"])
    assert dates["drain"] == "2026-12-04T08:19:08+00:00"  # not the first --only run's date
    assert dates["paced"] is not None and dates["paced"] > "2026-12-06T17:59:19+00:00"


def test_sections_from_a_file_without_dates_take_its_run_s_date() -> None:
    legacy = {"machine": {"measured_at": "2026-12-04T17:08:36+00:00"}}
    assert section_dates(legacy, carried=["device_flood"], measured=[]) == {
        "device_flood": "2026-12-04T17:08:36+00:00"
    }
