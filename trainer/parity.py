"""Checks between graphs and precisions; a failure stops the fit instead of shipping a bad bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import spearmanr

from trainer.config import QuantizeConfig
from trainer.errors import QualityGateError


@dataclass(frozen=True, slots=True)
class Int8Parity:
    """How closely INT8 follows FP32 on the same windows."""

    rank_correlation: float
    decision_agreement: float
    auroc_fp32: float
    auroc_int8: float

    def as_dict(self) -> dict[str, float]:
        """For bundle.json."""
        return asdict(self)


def relative_error(reference: npt.NDArray[np.floating], other: npt.NDArray[np.floating]) -> float:
    """Largest score difference relative to the spread of the reference scores."""
    spread = float(np.abs(reference).max()) or 1.0
    return float(np.abs(reference - other).max() / spread)


def check_fp32_parity(
    torch_scores: npt.NDArray[np.floating], onnx_scores: npt.NDArray[np.floating], limit: float
) -> float:
    """ONNX FP32 must reproduce torch; returns the relative error."""
    error = relative_error(torch_scores, onnx_scores)
    if not np.isfinite(error) or error > limit:
        raise QualityGateError(
            f"ONNX FP32 scores differ from torch by {error:.2e} (limit {limit:.0e}): export is broken"
        )
    return error


def int8_parity(
    fp32: npt.NDArray[np.floating],
    int8: npt.NDArray[np.floating],
    fp32_threshold: float,
    int8_threshold: float,
    auroc_fp32: float,
    auroc_int8: float,
) -> Int8Parity:
    """Rank and decision agreement on the same windows (normal and anomalous)."""
    rank = float(spearmanr(fp32, int8).statistic)
    agreement = float(np.mean((fp32 > fp32_threshold) == (int8 > int8_threshold)))
    return Int8Parity(
        rank_correlation=rank, decision_agreement=agreement, auroc_fp32=auroc_fp32, auroc_int8=auroc_int8
    )


def check_int8_parity(parity: Int8Parity, config: QuantizeConfig) -> None:
    """Raise with every failed criterion named."""
    failures = []
    if not parity.rank_correlation >= config.min_rank_correlation:
        failures.append(f"rank correlation {parity.rank_correlation:.3f} < {config.min_rank_correlation}")
    if not parity.decision_agreement >= config.min_decision_agreement:
        failures.append(
            f"decision agreement {parity.decision_agreement:.3f} < {config.min_decision_agreement}"
        )
    if parity.auroc_fp32 - parity.auroc_int8 > config.max_auc_drop:
        failures.append(f"AUROC fell from {parity.auroc_fp32:.3f} to {parity.auroc_int8:.3f}")
    if failures:
        raise QualityGateError("INT8 scorer does not match FP32: " + "; ".join(failures))
