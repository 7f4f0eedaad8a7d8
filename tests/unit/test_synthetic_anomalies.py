"""The AUROC used by the fit's quality checks, and the injectors it relies on."""

from __future__ import annotations

import numpy as np

from trainer.synthetic_anomalies import ANOMALY_KINDS, auroc, inject


def test_auroc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    normal, anomalous = rng.normal(size=40), rng.normal(0.7, size=30)
    anomalous[:5] = normal[:5]  # ties count half
    pairs = (anomalous[:, None] > normal[None, :]).mean() + 0.5 * (
        anomalous[:, None] == normal[None, :]
    ).mean()
    assert auroc(normal, anomalous) == pairs
    assert auroc(np.zeros(3), np.ones(3)) == 1.0


def test_every_kind_changes_every_window_and_leaves_the_input_alone() -> None:
    windows = np.random.default_rng(1).normal(size=(20, 16, 3)).astype(np.float32)
    original = windows.copy()
    for kind in ANOMALY_KINDS:
        out = inject(kind, windows, np.ones(3), seed=5)
        assert out.shape == windows.shape
        assert (np.abs(out - windows).reshape(20, -1).max(axis=1) > 0).all(), kind
    np.testing.assert_array_equal(windows, original)
