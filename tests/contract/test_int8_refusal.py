"""A fit whose INT8 graph misses its gate still ships: INT8 marked refused with its figures, FP32 served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.bundle import SCORER_FP32, SCORER_INT8, load_bundle
from edge_agent.config import BackendConfig
from edge_agent.decision import DecisionConfig
from edge_agent.pipeline import open_pipeline


@pytest.fixture(scope="module")
def refused_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A gate no INT8 graph can pass (rank correlation 1.0 and no AUROC loss at all)."""
    from tests.conftest import write_tiny_config
    from trainer.cli import main

    folder = tmp_path_factory.mktemp("refused")
    config = write_tiny_config(folder, quantize={"min_rank_correlation": 1.0, "max_auc_drop": 0.0})
    out = folder / "bundle"
    assert main(["fit", "--data", str(tiny_data), "--out", str(out), "--config", str(config)]) == 0
    return out


def test_the_bundle_records_the_refusal_with_its_figures(refused_bundle: Path) -> None:
    manifest = load_bundle(refused_bundle).manifest
    assert list(manifest.refused) == [SCORER_INT8]
    assert "rank correlation" in manifest.refused[SCORER_INT8] and "< 1.0" in manifest.refused[SCORER_INT8]
    assert (refused_bundle / SCORER_INT8).is_file()  # shipped for inspection, hashed like every file


def test_the_agent_serves_fp32_on_its_default_precision_and_says_why(
    refused_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = open_pipeline(refused_bundle, BackendConfig(), DecisionConfig())
    assert pipeline.scorer.name.endswith(SCORER_FP32)
    assert pipeline.threshold == load_bundle(refused_bundle).threshold_for(SCORER_FP32)
    assert any(
        "refused at fit time" in r.getMessage() and "serving fp32" in r.getMessage() for r in caplog.records
    )


def test_verify_prints_the_refusal(refused_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge_agent.cli import main

    assert main(["verify", "--bundle", str(refused_bundle)]) == 0
    captured = capsys.readouterr()
    assert list(json.loads(captured.out)["refused"]) == [SCORER_INT8]
    assert "served as FP32" in captured.err


def test_with_on_int8_failure_fail_the_fit_fails(tmp_path: Path, tiny_data: Path) -> None:
    from tests.conftest import write_tiny_config
    from trainer.cli import main

    config = write_tiny_config(
        tmp_path, quantize={"min_rank_correlation": 1.0, "max_auc_drop": 0.0, "on_int8_failure": "fail"}
    )
    out = tmp_path / "bundle"
    assert main(["fit", "--data", str(tiny_data), "--out", str(out), "--config", str(config)]) == 2
    assert not out.exists()
