"""The fit's closing summary as a short table: where the bundle went, what it detects, what the agent serves.

Why a table: the first thing a user reads after minutes of fitting; JSON stays available (`--json`) for
scripts, and bundle.json holds everything in full.
"""

from __future__ import annotations

from collections.abc import Mapping

from edge_agent.bundle import SCORER_FP32, SCORER_INT8, Bundle, Threshold
from edge_agent.fit_choice import level_left_out_line
from trainer.calibrate import REGIME_GAP, regime_gap


def _cell(value: object, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def summary_table(bundle: Bundle, fit_seconds: float) -> str:
    """Bundle, time, choice, then one row per scorer graph: threshold, holdout false alarms, AUROC and recall
    per injected kind at the threshold; last, the INT8 gate's verdict."""
    manifest = bundle.manifest
    validation = manifest.validation
    lines = [f"bundle {manifest.bundle_id} written to {bundle.path} in {fit_seconds:.0f} s"]
    auto = validation.get("auto")
    if isinstance(auto, dict):
        candidates = auto.get("candidates")
        count = len(candidates) if isinstance(candidates, list) else 0
        lines.append(
            f"settings chosen: {auto.get('winner')} (best of {count} candidates on injected anomalies; "
            "`edge-agent verify` shows them all)"
        )
        level = auto.get("window_level")
        if isinstance(level, dict) and level.get("not_fitted"):
            lines.append(f"  {level['not_fitted']}")
        if isinstance(level, dict) and isinstance(level.get("later_false_alarm_rate"), dict):
            lines.append(f"  {_level_line(level)}")
    left_out = level_left_out_line(manifest.score.level_left_out)
    if left_out is not None:
        lines.append(left_out)
    gate = _release_gate_line(validation.get("release_gate"))
    if gate is not None:
        lines.append(gate)
    detection = validation.get("detection")
    if isinstance(detection, dict):
        first = detection.get(SCORER_FP32)
        first_recall = first.get("recall_by_kind") if isinstance(first, dict) else None
        kinds = [str(kind) for kind in first_recall] if isinstance(first_recall, dict) else []
        head = f"{'graph':<18}{'threshold':>10}{'holdout FA':>11}{'AUROC':>7}"
        lines.append(head + "".join(f"{kind[:11]:>12}" for kind in kinds))
        for graph in (SCORER_FP32, SCORER_INT8):
            row = detection.get(graph)
            if not isinstance(row, dict):
                continue
            recall = row.get("recall_by_kind")
            recall = recall if isinstance(recall, dict) else {}
            line = f"{graph:<18}{_cell(row.get('threshold')):>10}"
            line += (
                f"{_cell(row.get('holdout_false_alarm_rate'), 4):>11}{_cell(row.get('auroc_synthetic')):>7}"
            )
            lines.append(line + "".join(f"{_cell(recall.get(kind)):>12}" for kind in kinds))
        lines.append("(recall: share of held-out windows with one injected anomaly above the threshold)")
    threshold = manifest.thresholds.get(SCORER_FP32)
    if threshold is not None:
        lines.append(_calibration_line(threshold))
    if manifest.refused:
        reasons = "; ".join(f"{name}: {why}" for name, why in manifest.refused.items())
        lines.append(f"refused: {reasons}; agents serve FP32")
    else:
        parity = validation.get("int8_vs_fp32")
        agreement = parity.get("decision_agreement") if isinstance(parity, dict) else None
        lines.append(
            f"INT8 matches FP32 (decisions agree {_cell(agreement)}); the agent's default serves INT8"
        )
    layers = validation.get("int8_layers")
    if isinstance(layers, dict):
        lines.append(_int8_layers_line(layers))
    return "\n".join(lines)


def _release_gate_line(gate: object) -> str | None:
    """How far the newest steps' terms must reach before a high window score counts (score.release_gate)."""
    ratios = gate.get("ratios") if isinstance(gate, dict) else None
    if not isinstance(ratios, list) or not ratios:
        return None
    if all(ratio is None for ratio in ratios):
        return "release gate: off (score.release_gate false, or the chosen weights read no newest steps)"
    shown = ", ".join("-" if ratio is None else f"{float(ratio):.3g}" for ratio in ratios)
    return (
        f"release gate: score = min(full, {shown} x its newest steps' terms): a window whose fault has "
        "ended reads normal once its newest steps do"
    )


def _int8_layers_line(layers: Mapping[str, object]) -> str:
    """Whether INT8 quantised the generator too, and the mean recall of both INT8 graphs behind the choice."""
    candidates = layers.get("candidates")
    cells = []
    if isinstance(candidates, dict):
        for name, row in candidates.items():
            recall = row.get("recall_by_kind") if isinstance(row, dict) else None
            if isinstance(recall, dict) and recall:
                cells.append(f"{name} mean recall {_cell(sum(recall.values()) / len(recall))}")
    served = layers.get("generator_hidden_layers")
    return f"INT8 generator hidden layers: {served} ({', '.join(cells)})"


CALIBRATION_PARTS = {
    "holdout": "holdout",
    "train": "training windows (in sample)",
    "cross_fit": "training windows cross-fitted",
}


def _calibration_line(threshold: Threshold) -> str:
    """What backs the FP32 threshold: windows per calibration, the one that set it, its 5-95% range."""
    details = threshold.details
    others = {part: details[f"{part}_windows"] for part in CALIBRATION_PARTS if f"{part}_windows" in details}
    counts = {"holdout": threshold.calibration_windows - sum(others.values())} | others
    deciding = next(
        (part for part in others if details.get(f"{part}_threshold") == threshold.value), "holdout"
    )
    windows = ", ".join(f"{CALIBRATION_PARTS[part]} {count:.0f}" for part, count in counts.items())
    line = (
        f"threshold {threshold.value:.3f} ({threshold.method}) set by the {CALIBRATION_PARTS[deciding]}; "
        f"windows: {windows}"
    )
    low, high = details.get("threshold_interval_low"), details.get("threshold_interval_high")
    if low is not None and high is not None:
        line += f"; 5-95% range {low:.3g}-{high:.3g}"
    gap = regime_gap(details)
    if gap is not None and gap >= REGIME_GAP:
        line += f"; the holdout's own threshold is {gap:.0f}x the training windows' (another regime?)"
    return line


def _level_line(level: Mapping[str, object]) -> str:
    """Why the served level won: each level's best mean recall and its later holdout false alarms."""
    recall, later = level.get("best_mean_recall"), level.get("later_false_alarm_rate")
    assert isinstance(recall, dict) and isinstance(later, dict)
    cells = ", ".join(
        f"{name} recall {_cell(recall.get(name))} later false alarms {_cell(later.get(name), 4)}"
        for name in recall
    )
    line = f"window_level {level.get('winner')}: {cells}"
    gaps = level.get("recall_gaps")
    for gap in gaps if isinstance(gaps, list) else []:
        margin = gap.get("margin")
        needed = "no bound (under two independent blocks)" if margin is None else f"tie margin {margin:.3f}"
        line += f"; {gap.get('better')} leads by {gap.get('difference', 0):.3f}, {needed}"
    return line
