"""The automatic settings choice a bundle records (validation.auto), as one readable table.

Here, not in the trainer, because `edge-agent verify` prints it on gateways that have no trainer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def level_left_out_line(channels: Sequence[str]) -> str | None:
    """The line the fit summary and `edge-agent verify` print for channels left out of the level term (None:
    the level term judges every channel)."""
    if not channels:
        return None
    return (
        f"level term leaves out {', '.join(channels)}: drifted out of the training range at fit time, judged "
        "by the other terms and the agent's operating-range warning"
    )


def choice_table(candidates: Sequence[Mapping[str, object]], winner: str) -> str:
    """A row per candidate: mean recall on injected anomalies, recall per kind, threshold, and the share
    of later (holdout) normal windows above a threshold from the earlier (training) part, and the holdout's
    own threshold over the training windows' (gap; blank in bundles older than it)."""
    if not candidates:
        return ""
    kinds = list(_floats(candidates[0]["recall_by_kind"]))
    width = max(15, *(len(str(row["name"])) + 1 for row in candidates))
    header = f"  {'candidate':<{width}}{'recall':>7}" + "".join(f"{kind[:11]:>12}" for kind in kinds)
    lines = [header + f"{'threshold':>11}{'later FA':>9}{'gap':>8}"]
    for row in candidates:
        by_kind = _floats(row["recall_by_kind"])
        mark = "*" if row["name"] == winner else " "
        line = f"{mark} {row['name']!s:<{width}}{_float(row['mean_recall']):>7.3f}"
        line += "".join(f"{by_kind.get(kind, float('nan')):>12.3f}" for kind in kinds)
        line += f"{_float(row['threshold']):>11.3g}{_float(row['holdout_rate_at_train_threshold']):>9.4f}"
        gap = row.get("regime_gap")
        line += f"{_float(gap):>8.3g}" if gap is not None else " " * 8
        lines.append(line)
    return "\n".join(lines)


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _floats(value: object) -> dict[str, float]:
    return {str(k): _float(v) for k, v in value.items()} if isinstance(value, Mapping) else {}
