"""How much does the bar's verdict depend on the fit's seed? Reads the per-seed results files of one dataset.

Usage: python -m benchmarks.detection.seed_spread
Three-member bundles (`model.members: 3`: seeds 0, 1, 2, or 3, 4, 5, averaged in one graph) follow the seeds.
Each seed's run (`--set fit.seed=N --variant NAME_seedN`, see benchmarks/README.md) wrote its own
results/detection_*.json. Per dataset and seed this lists every EdgeGAN operating point (scorer graph x
severity level) and which baselines each one beats: higher point-wise F1 at an equal or lower false-alarm
rate. Writes benchmarks/results/seed_spread.json (round 6 of the detection summary).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from benchmarks.detection.report import OURS_PREFIX, beats, operating_points
from benchmarks.environment import write_result

RESULTS = Path(__file__).resolve().parents[1] / "results"
# dataset -> (group in the results file, results file of seed 0, 1, 2)
RUNS = {
    "realKnownCause (default model)": (
        "NAB realKnownCause",
        ["detection", "detection_levels_seed1", "detection_levels_seed2"],
    ),
    "SMD (floors)": (
        "SMD",
        ["detection_floors_levels", "detection_floors_levels_seed1", "detection_floors_levels_seed2"],
    ),
    "realAWSCloudwatch (level-free)": (
        "NAB realAWSCloudwatch",
        [
            "detection_level_free_levels",
            "detection_level_free_levels_seed1",
            "detection_level_free_levels_seed2",
        ],
    ),
}

# dataset -> (fit, results file) of the bundles whose graph averages three seeds (`--set model.members=3`)
ENSEMBLES = {
    "realKnownCause (default model)": [
        ("members 0+1+2", "detection_members3"),
        ("members 3+4+5", "detection_members3_seed3"),
    ],
    "SMD (floors)": [("members 0+1+2", "detection_floors_members3")],
    "realAWSCloudwatch (level-free)": [("members 0+1+2", "detection_level_free_members3")],
}

Point = dict[str, float]


def verdicts(group: dict[str, object]) -> dict[str, dict[str, object]]:
    """Per baseline: its own point and the EdgeGAN points (`report.operating_points`) that beat it."""
    detectors: dict[str, dict[str, float]] = group["detectors"]  # type: ignore[assignment]
    points = operating_points(detectors, group.get("levels", {}))  # type: ignore[attr-defined]
    out: dict[str, dict[str, object]] = {}
    for name, row in detectors.items():
        if name.startswith(OURS_PREFIX) or name.startswith("reference"):
            continue
        out[name] = {"point": _point(row), "beaten_by": [p for p, mine in points.items() if beats(mine, row)]}
    return out


def _point(row: Mapping[str, object]) -> Point:
    return {"f1": float(row["f1"]), "false_alarm_rate": float(row["false_alarm_rate"])}


def measure(results: Path = RESULTS) -> dict[str, list[dict[str, object]]]:
    """Every dataset's seeds, then its three-member bundles, whose results file exists."""
    out: dict[str, list[dict[str, object]]] = {}
    for dataset, (group_name, files) in RUNS.items():
        fits = [(f"seed {seed}", stem) for seed, stem in enumerate(files)]
        fits += ENSEMBLES[dataset]
        entries = []
        for fit, stem in fits:
            path = results / f"{stem}.json"
            if path.is_file():
                entries.append({"fit": fit, "file": path.name} | _verdict_of(path, group_name))
        out[dataset] = entries
    return out


def _verdict_of(path: Path, group_name: str) -> dict[str, object]:
    group = json.loads(path.read_text())["groups"][group_name]
    points = operating_points(group["detectors"], group.get("levels", {}))
    return {
        "series_pooled": len(group["series"]),
        "operating_points": {name: _point(row) for name, row in points.items()},  # type: ignore[arg-type]
        "baselines": verdicts(group),
    }


def main() -> None:
    figures = measure()
    for dataset, seeds in figures.items():
        print(dataset)
        for entry in seeds:
            baselines: dict[str, dict[str, object]] = entry["baselines"]  # type: ignore[assignment]
            unbeaten = [name for name, v in baselines.items() if not v["beaten_by"]]
            print(f"  {entry['fit']}: unbeaten {', '.join(unbeaten) or 'none'}")
    print(f"wrote {write_result('seed_spread', {'datasets': figures})}")


if __name__ == "__main__":
    main()
