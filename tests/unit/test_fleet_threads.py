"""fit-assets shares the cores among its workers instead of oversubscribing them."""

from __future__ import annotations

import pytest

from trainer.asset_fit import worker_config
from trainer.cores import threads_per_worker, usable_cores


@pytest.mark.parametrize(
    ("wanted", "workers", "cores", "expected"),
    [
        (2, 2, 2, 1),  # the default config on a 2-core gateway: one thread each, not four on two cores
        (4, 2, 16, 4),  # room to spare: the configured count stands
        (8, 3, 16, 5),  # cut to the fair share
        (2, 4, 2, 1),  # more workers than cores: still one thread each
    ],
)
def test_threads_per_worker_never_exceeds_the_share_of_cores(
    wanted: int, workers: int, cores: int, expected: int
) -> None:
    assert threads_per_worker(wanted, workers, cores) == expected


def test_usable_cores_is_a_positive_count_no_larger_than_the_machine() -> None:
    import os

    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


def test_each_worker_is_handed_its_share_and_nothing_else_changes() -> None:
    from trainer.config import TrainConfig

    config = TrainConfig.model_validate({"fit": {"threads": 2, "seed": 7}})
    shared = worker_config(config, workers=2, cores=2)
    assert shared.fit.threads == 1
    assert shared.model_dump(exclude={"fit": {"threads"}}) == config.model_dump(exclude={"fit": {"threads"}})
    assert config.fit.threads == 2  # the caller's config is not mutated
    assert worker_config(config, workers=2, cores=8) is config
