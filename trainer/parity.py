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
    normal_decision_agreement: float
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
    n_normal: int,
    thresholds: tuple[float, float],
    aurocs: tuple[float, float],
) -> Int8Parity:
    """Rank and decision agreement on the same windows; the first `n_normal` are the normal ones."""
    same = (fp32 > thresholds[0]) == (int8 > thresholds[1])
    return Int8Parity(
        rank_correlation=float(spearmanr(fp32, int8).statistic),
        decision_agreement=float(np.mean(same)),
        normal_decision_agreement=float(np.mean(same[:n_normal])),
        auroc_fp32=aurocs[0],
        auroc_int8=aurocs[1],
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
