"""The store-and-forward spool: order, historical flag, restart, limits, coalescing, acknowledgements."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edge_agent.spool import DROP_NEWEST, DROP_OLDEST, Spool, mark_historical


@dataclass
class Outbox:
    """Stands in for the MQTT client's queue: records what was handed over and numbers it."""

    sent: list[tuple[str, bytes]] = field(default_factory=list)
    refuse: bool = False

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        if self.refuse:
            return None
        self.sent.append((topic, payload))
        return len(self.sent)  # the message id


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _alert(n: int) -> bytes:
    return json.dumps({"alert_id": f"a{n:02d}", "type": "start"}).encode()  # equal sizes


def _spool(path: Path, clock: Clock | None = None, **limits: object) -> Spool:
    settings: dict[str, object] = {"max_bytes": 10_000, "max_age_s": 3600.0, "on_full": DROP_OLDEST}
    settings.update(limits)
    return Spool(path, clock=clock or Clock(), **settings)  # type: ignore[arg-type]


def test_connected_messages_go_out_live_and_leave_the_spool_on_ack(tmp_path: Path) -> None:
    spool, out = _spool(tmp_path / "s.db"), Outbox()
    spool.submit("edgegan/alert/d1", _alert(1), 1, False, True, out.publish)
    assert out.sent == [("edgegan/alert/d1", _alert(1))]  # no historical flag: it went out live
    assert spool.stored() == 1 and spool.waiting() == 0  # on disk until the broker acknowledges
    spool.acknowledged(1)
    spool.flush(out.publish)
    assert spool.stored() == 0 and spool.size_bytes() == 0


def test_messages_raised_while_disconnected_are_flushed_in_order_as_historical(tmp_path: Path) -> None:
    spool, out = _spool(tmp_path / "s.db"), Outbox()
    for n in range(5):
        spool.submit(f"edgegan/alert/d{n % 2}", _alert(n), 1, False, False, out.publish)
    assert out.sent == [] and spool.waiting() == 5
    assert spool.flush(out.publish) == 5
    bodies = [json.loads(p) for _, p in out.sent]
    assert [b["alert_id"] for b in bodies] == [f"a{n:02d}" for n in range(5)]
    assert all(b["historical"] is True for b in bodies)
    # A new message while older ones are in flight is sent live, after them.
    spool.submit("edgegan/alert/d0", _alert(9), 1, False, True, out.publish)
    assert json.loads(out.sent[-1][1]) == {"alert_id": "a09", "type": "start"}


def test_nothing_is_lost_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first, out = _spool(path), Outbox()
    first.submit("edgegan/alert/d1", _alert(1), 1, False, False, out.publish)
    first.submit("edgegan/alert/d1", _alert(2), 1, False, True, out.publish)  # behind a waiting one
    first.close()
    second = _spool(path)
    assert second.waiting() == 2
    second.flush(out.publish)
    assert [json.loads(p)["alert_id"] for _, p in out.sent] == ["a01", "a02"]
    assert all(json.loads(p)["historical"] for _, p in out.sent)  # both historical by now


def test_sent_but_unacknowledged_messages_are_resent_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first, out = _spool(path), Outbox()
    first.submit("edgegan/alert/d1", _alert(1), 1, False, True, out.publish)  # in flight, no PUBACK yet
    first.close()
    second, again = _spool(path), Outbox()
    second.flush(again.publish)
    expected = {"alert_id": "a01", "type": "start", "historical": True}
    assert [json.loads(p) for _, p in again.sent] == [expected]


def test_a_refused_publish_stays_waiting(tmp_path: Path) -> None:
    spool, out = _spool(tmp_path / "s.db"), Outbox(refuse=True)
    spool.submit("t", _alert(1), 1, False, True, out.publish)
    assert spool.waiting() == 1
    out.refuse = False
    spool.flush(out.publish)
    assert len(out.sent) == 1 and spool.waiting() == 0


@pytest.mark.faults
def test_full_spool_drops_the_oldest_by_default(tmp_path: Path) -> None:
    size = len(_alert(0))
    spool, out = _spool(tmp_path / "s.db", max_bytes=1024), Outbox()
    for n in range(40):
        spool.submit("t", _alert(n), 1, False, False, out.publish)
    kept = 1024 // size
    assert spool.waiting() == kept and spool.size_bytes() <= 1024
    assert spool.dropped["full"] == 40 - kept
    spool.flush(out.publish)
    assert [json.loads(p)["alert_id"] for _, p in out.sent] == [f"a{n:02d}" for n in range(40 - kept, 40)]


def test_full_spool_can_refuse_the_newest_instead(tmp_path: Path) -> None:
    size = len(_alert(0))
    spool, out = _spool(tmp_path / "s.db", max_bytes=1024, on_full=DROP_NEWEST), Outbox()
    for n in range(40):
        spool.submit("t", _alert(n), 1, False, False, out.publish)
    kept = 1024 // size
    spool.flush(out.publish)
    assert [json.loads(p)["alert_id"] for _, p in out.sent] == [f"a{n:02d}" for n in range(kept)]
    assert spool.dropped["full"] == 40 - kept


@pytest.mark.faults
def test_messages_older_than_the_age_limit_are_dropped_not_sent(tmp_path: Path) -> None:
    clock = Clock()
    spool, out = _spool(tmp_path / "s.db", clock=clock, max_age_s=60.0), Outbox()
    spool.submit("t", _alert(1), 1, False, False, out.publish)
    clock.now += 61
    spool.submit("t", _alert(2), 1, False, False, out.publish)
    spool.flush(out.publish)
    assert [json.loads(p)["alert_id"] for _, p in out.sent] == ["a02"]
    assert spool.dropped["expired"] == 1


def test_waiting_state_changes_of_a_device_keep_only_the_newest(tmp_path: Path) -> None:
    spool, out = _spool(tmp_path / "s.db"), Outbox()
    spool.submit("edgegan/state/d1", b"anomalous", 1, True, False, out.publish, "state:d1")
    spool.submit("edgegan/state/d2", b"anomalous", 1, True, False, out.publish, "state:d2")
    spool.submit("edgegan/state/d1", b"normal", 1, True, False, out.publish, "state:d1")
    spool.flush(out.publish)
    assert out.sent == [("edgegan/state/d2", b"anomalous"), ("edgegan/state/d1", b"normal")]


@pytest.mark.parametrize("payload", [b"normal", b"[1, 2]", b"{not json"])
def test_only_json_objects_get_the_historical_flag(payload: bytes) -> None:
    assert mark_historical(payload) == payload


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB filesystem to fill up; mounting needs root (CI and the developers' machines run as
    root; elsewhere the test says why it cannot run)."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not root'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> Path:
    """Write until the filesystem is full; the filler file is returned so the test can free the space."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(descriptor)
    return filler


@pytest.mark.faults
def test_a_full_disk_between_publish_and_acknowledgement_loses_and_repeats_nothing(small_tmpfs: Path) -> None:
    """The defect: the delete after a PUBACK failed on a full disk, the row stayed untracked and was sent
    again (as historical, after a reopen), and the waiting count went negative. Now the outbox moves to
    memory with every row, each acknowledged message is gone exactly once, and later ones still go out."""
    clock, outbox = Clock(), Outbox()
    spool = Spool(small_tmpfs / "spool.sqlite", max_bytes=10**6, max_age_s=3600, clock=clock)
    for n in range(5):
        spool.submit("edgegan/alert/d", _alert(n), 1, False, True, outbox.publish)
        spool.flush(outbox.publish)
    filler = _fill(small_tmpfs)
    for mid in range(1, 6):
        spool.acknowledged(mid)
    for n in range(5, 40):  # more alerts while the disk is full: none may be lost
        spool.submit("edgegan/alert/d", _alert(n), 1, False, True, outbox.publish)
        spool.flush(outbox.publish)
    assert not spool.on_disk and spool.fallbacks == 1
    assert spool.waiting() >= 0
    for mid in range(6, len(outbox.sent) + 1):
        spool.acknowledged(mid)
    spool.flush(outbox.publish)
    assert spool.stored() == 0 and spool.waiting() == 0
    assert [json.loads(p)["alert_id"] for _, p in outbox.sent] == [f"a{n:02d}" for n in range(40)]
    assert spool.snapshot()["on_disk"] is False
    # Space comes back: the next retry moves the (empty) outbox back to the file.
    filler.unlink()
    clock.now += 61
    spool.submit("edgegan/alert/d", _alert(40), 1, False, False, outbox.publish)
    spool.flush(outbox.publish)
    assert spool.on_disk
    spool.close()


@pytest.mark.faults
def test_a_read_only_spool_filesystem_starts_in_memory_and_keeps_working(small_tmpfs: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    clock, outbox = Clock(), Outbox()
    spool = Spool(small_tmpfs / "spool.sqlite", max_bytes=10**6, max_age_s=3600, clock=clock)
    assert not spool.on_disk and spool.fallbacks == 1
    spool.submit("edgegan/alert/d", _alert(1), 1, False, False, outbox.publish)
    spool.flush(outbox.publish)
    spool.acknowledged(1)
    spool.flush(outbox.publish)
    assert len(outbox.sent) == 1 and spool.stored() == 0
    subprocess.run(["mount", "-o", "remount,rw", str(small_tmpfs)], check=True)
