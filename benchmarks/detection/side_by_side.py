"""A new EdgeGAN default next to the last full run's detectors, series for series, pooled per dataset.

Usage: python -m benchmarks.detection.side_by_side [--previous benchmarks/results/detection.json]
                                                   [--cache runs/detection] [--name side_by_side_round8]
Fill EdgeGAN's cache first with the current defaults:
    python -m benchmarks.detection.run --groups realKnownCause,SMD,realAWSCloudwatch --ours-only \\
        --set score.level_weight=1 --variant round8
Why: the baselines' windows, splits and threshold rule do not depend on EdgeGAN's settings (the harness keys
their cache on those alone), so the last full run's baseline counts stand for this one, and only EdgeGAN is
refitted. Each dataset pools, over the series both runs scored, the old default's, the new default's and
every baseline's counts; AUC-PR is the mean over series.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.detection.datasets import DEFAULT_ROOT, load_all
from benchmarks.detection.metrics import Counts
from benchmarks.detection.run import benchmark_config, edgegan_folder, parse_settings
from benchmarks.environment import write_result

REPO = Path(__file__).resolve().parents[2]
GROUPS = {"NAB realKnownCause": "realKnownCause", "NAB realAWSCloudwatch": "realAWSCloudwatch", "SMD": "SMD"}
NEW = "EdgeGAN {} (new default)"
OLD = "EdgeGAN {} (old default)"
SCORERS = {"EdgeGAN ORT INT8": "INT8", "EdgeGAN ORT FP32": "FP32", "EdgeGAN daemon (INT8)": "daemon"}


def _pool(entries: list[dict[str, object]]) -> dict[str, float | None]:
    total: Counts | None = None
    for entry in entries:
        counts = Counts(**entry["counts"])  # type: ignore[arg-type]
        total = counts if total is None else total + counts
    assert total is not None
    summary = total.summary()
    aucs = [float(e["auc_pr"]) for e in entries if e.get("auc_pr") is not None]  # type: ignore[arg-type]
    return {
        "f1": summary["f1"],
        "false_alarm_rate": summary["false_alarm_rate"],
        "auc_pr": float(np.mean(aucs)) if aucs else None,
        "series": float(len(entries)),
    }


def compare(
    previous: Path, cache: Path, settings: list[str]
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Dataset -> detector -> pooled F1, FAR and mean AUC-PR over the series both runs have."""
    series_list = json.loads(previous.read_text())["series"]
    earlier = {(s["group"], s["series"]): s["detectors"] for s in series_list if "detectors" in s}
    config = benchmark_config(False, parse_settings(settings))
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for group, name in GROUPS.items():
        rows: dict[str, list[dict[str, object]]] = {}
        for series in load_all(DEFAULT_ROOT, (name,)):
            result = edgegan_folder(cache, series, config) / "result.json"
            old = earlier.get((series.group, series.name))
            if not result.is_file() or old is None:
                continue
            new = json.loads(result.read_text())
            if any(scorer not in old for scorer in SCORERS):
                continue  # the old default refused this series: compare like with like
            for scorer, short in SCORERS.items():
                rows.setdefault(NEW.format(short), []).append(new[scorer])
                rows.setdefault(OLD.format(short), []).append(old[scorer])
            for detector, entry in old.items():
                if not detector.startswith("EdgeGAN") and "counts" in entry:
                    rows.setdefault(detector, []).append(entry)
        if rows:
            table[group] = {detector: _pool(entries) for detector, entries in rows.items()}
    return table


def markdown(table: dict[str, dict[str, dict[str, float | None]]]) -> str:
    """One table per dataset: F1 / FAR / AUC-PR, new and old default first."""
    lines = []
    for group, rows in table.items():
        lines += [f"**{group}** ({int(next(iter(rows.values()))['series'] or 0)} series)", ""]
        lines += ["| detector | F1 | FAR | AUC-PR |", "| --- | --- | --- | --- |"]
        for detector, cells in rows.items():
            auc = "-" if cells["auc_pr"] is None else f"{cells['auc_pr']:.3f}"
            lines.append(f"| {detector} | {cells['f1']:.3f} | {cells['false_alarm_rate']:.4f} | {auc} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--previous", type=Path, default=REPO / "benchmarks" / "results" / "detection.json")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "detection")
    parser.add_argument("--set", action="append", default=[], metavar="section.key=value")
    parser.add_argument("--name", default="side_by_side_round8")
    args = parser.parse_args(argv)
    table = compare(args.previous, args.cache, args.set)
    write_result(args.name, {"previous": str(args.previous), "settings": args.set, "table": table})
    print(markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
