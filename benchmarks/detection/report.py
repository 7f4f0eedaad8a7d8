"""benchmarks/REPORT.md from the detection results: tables per dataset, verdict, speed, plots."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from benchmarks.detection.metrics import pr_curve, segments
from benchmarks.environment import describe_machine
from edge_agent.bundle import ALERT_LEVEL

BENCHMARKS = Path(__file__).resolve().parents[1]
SUMMARY = Path(__file__).with_name("summary.md")  # the report's hand-written part
GENERATED_START = "## How it is measured"  # the first generated section after the hand-written summary
OURS_PREFIX = "EdgeGAN"
COLUMNS = (
    ("precision", "P"),
    ("recall", "R"),
    ("f1", "F1"),
    ("false_alarm_rate", "FAR"),
    ("miss_rate", "miss"),
    ("auc_pr_mean", "AUC-PR"),
    ("event_recall", "event recall"),
    ("mean_delay_rows", "delay (rows)"),
    ("point_adjusted_f1", "PA-F1 (inflated)"),
)


def _cell(value: object, key: str) -> str:
    if value is None:
        return "-"
    if key == "false_alarm_rate":
        return f"{float(value):.4f}"
    if key == "mean_delay_rows":
        return f"{float(value):.0f}"
    return f"{float(value):.3f}"


def _table(rows: dict[str, dict[str, object]]) -> list[str]:
    lines = [
        "| detector | " + " | ".join(label for _, label in COLUMNS) + " |",
        "| --- |" + " --- |" * len(COLUMNS),
    ]
    for name, row in rows.items():
        label = f"**{name}**" if name.startswith(OURS_PREFIX) else name
        lines.append(f"| {label} | " + " | ".join(_cell(row.get(k), k) for k, _ in COLUMNS) + " |")
    return lines


def verdict(rows: dict[str, dict[str, object]], ours: str) -> list[str]:
    """Which baselines `ours` beats on point-wise F1 at an equal or lower false-alarm rate, and which not."""
    mine = rows[ours]
    lines = []
    for name, row in rows.items():
        if name.startswith(OURS_PREFIX) or name.startswith("reference"):
            continue
        if beats(mine, row):
            word = "beaten"
        elif float(mine["f1"]) > float(row["f1"]):  # type: ignore[arg-type]
            word = "our F1 is higher, but so is our false-alarm rate"
        else:
            word = "**not beaten**"
        lines.append(
            f"- {name}: {word} (F1 {float(row['f1']):.3f} vs {float(mine['f1']):.3f}, "
            f"FAR {_cell(row['false_alarm_rate'], 'false_alarm_rate')} vs "
            f"{_cell(mine['false_alarm_rate'], 'false_alarm_rate')})"
        )
    return lines


def beats(mine: Mapping[str, object], theirs: Mapping[str, object]) -> bool:
    """The bar: higher point-wise F1 at an equal or lower false-alarm rate."""
    f1_ok = float(mine["f1"]) > float(theirs["f1"])  # type: ignore[arg-type]
    return f1_ok and float(mine["false_alarm_rate"] or 0) <= float(theirs["false_alarm_rate"] or 0)  # type: ignore[arg-type]


def operating_points(
    rows: Mapping[str, Mapping[str, object]], levels: Mapping[str, Mapping[str, Mapping[str, object]]]
) -> dict[str, Mapping[str, object]]:
    """EdgeGAN's pooled points, named 'scorer at level': each scorer graph at its alert threshold and at
    each severity level it was measured at."""
    ours = [name for name in rows if name.startswith(OURS_PREFIX)]
    every_level = {ALERT_LEVEL: rows, **levels}
    return {
        f"{name} at {level}": table[name]
        for name in ours
        for level, table in every_level.items()
        if name in table
    }


def level_lines(
    rows: dict[str, dict[str, object]],
    levels: dict[str, dict[str, dict[str, object]]] | None,
    budgets: dict[str, float],
    alert_budget: float,
) -> list[str]:
    """Every detector at each training-calibrated operating point, and which of EdgeGAN's points beat each
    baseline: the bar asks for F1 at an equal or lower false-alarm rate, and a deployment can alert at any of
    its bundle's levels (`decision.level`; `backend.precision` picks the graph)."""
    levels = levels or {}
    names = [n for n in rows if not n.startswith("reference") and all(n in t for t in levels.values())]
    ours = [n for n in names if n.startswith(OURS_PREFIX)]
    if not levels or not ours:
        return []
    header = [f"alert (budget {alert_budget:g})", *[f"{n} (budget {budgets.get(n, 0):g})" for n in levels]]
    lines = [
        "",
        "At each severity level (`score.severity_levels`): every detector's threshold at that level's "
        "false-alarm budget, by the same training-part rule. Cells are F1 / FAR.",
        "",
        "| detector | " + " | ".join(header) + " |",
        "| --- |" + " --- |" * len(header),
    ]
    for name in names:
        cells = [_f1_far(rows[name]), *[_f1_far(table[name]) for table in levels.values()]]  # type: ignore[arg-type]
        label = f"**{name}**" if name in ours else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    points = operating_points(rows, levels)
    lines += [
        "",
        "Which of EdgeGAN's operating points beat each baseline at the baseline's alert threshold "
        "(higher F1, equal or lower FAR), and the daemon level for level (both at the same budget):",
        "",
    ]
    daemon = ours[-1]
    for name in names:
        if name in ours:
            continue
        winning = [point for point, row in points.items() if beats(row, rows[name])]
        word = "; ".join(winning) if winning else "**none**"
        same = [
            f"{level}: {'beaten' if beats(table[daemon], table[name]) else 'not beaten'}"
            for level, table in levels.items()
        ]
        lines.append(
            f"- {name} ({_f1_far(rows[name])}): {word}. Level for level ({'; '.join(same)})"  # type: ignore[arg-type]
        )
    return lines


def alert_rule_lines(
    rows: dict[str, dict[str, object]], under_rule: dict[str, dict[str, object]] | None
) -> list[str]:
    """Every detector point-wise and under the agent's alert rule, and whether the daemon beats each baseline
    when both raise the alarms a deployment behind the agent would: the same rule on both sides."""
    under_rule = under_rule or {}
    names = [n for n in rows if n in under_rule]
    daemon = "EdgeGAN daemon (INT8)"
    if daemon not in under_rule or len(names) < 2:
        return []
    lines = [
        "",
        "Under the agent's alert rule (`benchmarks/detection/alert_rule.py`: 3 windows in a row above the "
        "threshold start an alarm, 5 below 0.9 of it end one), every detector at its own alert threshold. "
        "The daemon row is the daemon itself; the others are their scores through the same rule. Cells are "
        "F1 / FAR.",
        "",
        "| detector | point-wise | under the alert rule | daemon beats it, both under the rule |",
        "| --- | --- | --- | --- |",
    ]
    for name in names:
        ours = name.startswith(OURS_PREFIX)
        word = "" if ours else ("yes" if beats(under_rule[daemon], under_rule[name]) else "**no**")
        label = f"**{name}**" if ours else name
        lines.append(
            f"| {label} | {_f1_far(rows[name])} | {_f1_far(under_rule[name])} | {word} |"  # type: ignore[arg-type]
        )
    return lines


def _f1_far(summary: dict[str, float | None]) -> str:
    return f"{_cell(summary['f1'], 'f1')} / {_cell(summary['false_alarm_rate'], 'false_alarm_rate')}"


def _matched_lines(table: dict[str, dict[str, dict[str, float | None]]] | None) -> list[str]:
    """benchmarks/detection/matched.py's comparison: ranking at matched false alarms, per baseline."""
    if not table:
        return []
    lines = [
        "",
        "At matched false alarms (`benchmarks/detection/matched.py`): on each series, one detector's "
        "threshold is set with the test labels so that it raises no more false alarms than the other did"
        " at its own threshold; then the series are pooled. An oracle, not a deployable threshold: it "
        "separates how well a detector ranks the test rows from how well its training-part threshold "
        "carried over. Cells are F1 / FAR.",
        "",
        "| baseline | baseline, own threshold | EdgeGAN INT8 at the baseline's false alarms | EdgeGAN INT8, "
        "own threshold | baseline at EdgeGAN's false alarms | ranks better at both points |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, cells in table.items():
        ours_there = float(cells["ours_at_baseline_false_alarms"]["f1"] or 0)
        theirs_here = float(cells["baseline_at_our_false_alarms"]["f1"] or 0)
        ours_own, theirs_own = float(cells["ours"]["f1"] or 0), float(cells["baseline"]["f1"] or 0)
        wins = ours_there > theirs_own and ours_own > theirs_here
        lines.append(
            f"| {name} | {_f1_far(cells['baseline'])} | {_f1_far(cells['ours_at_baseline_false_alarms'])} | "
            f"{_f1_far(cells['ours'])} | {_f1_far(cells['baseline_at_our_false_alarms'])} | "
            f"{'EdgeGAN' if wins else '**no**'} |"
        )
    return lines


def _members(results: list[dict[str, object]], group: str) -> list[dict[str, object]]:
    return [r for r in results if r["group"] == group]


def _representative(results: list[dict[str, object]], group: str) -> dict[str, object] | None:
    members = [
        r for r in results if r["group"] == group and "detectors" in r and int(r["test_positive_rows"]) > 0
    ]
    return max(members, key=lambda r: int(r["test_positive_rows"])) if members else None


def _plots(results: list[dict[str, object]], group: str, folder: Path) -> list[str]:
    """PR curves and a score trace for the group's series with the most labelled rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    member = _representative(results, group)
    if member is None:
        return []
    slug = f"{group}_{member['series']}".replace(" ", "_")
    if "carried_from" in member:  # measured by an earlier run: its plots are the ones that run drew
        return [p.name for p in (folder / f"pr_{slug}.png", folder / f"trace_{slug}.png") if p.is_file()]
    traces = np.load(Path(str(member["_traces"])))
    labels = traces["labels"].astype(np.int8)
    names = [n for n in member["detectors"] if n in traces and "daemon" not in n]
    folder.mkdir(parents=True, exist_ok=True)

    figure, axis = plt.subplots(figsize=(6, 4.5))
    for name in names:
        precision, recall = pr_curve(traces[name], labels)
        axis.plot(recall, precision, label=name, linewidth=2.2 if name.startswith(OURS_PREFIX) else 1.2)
    axis.axhline(labels.mean(), color="grey", linestyle=":", label="positive share")
    axis.set(xlabel="recall", ylabel="precision", title=f"PR curves: {group} {member['series']}")
    axis.legend(fontsize=7)
    figure.tight_layout()
    pr_path = folder / f"pr_{slug}.png"
    figure.savefig(pr_path, dpi=110)
    plt.close(figure)

    shown = [n for n in names if n in ("EdgeGAN ORT INT8", "IsolationForest", "Conv autoencoder", "PCA Q")]
    figure, axes = plt.subplots(len(shown), 1, figsize=(10, 1.8 * len(shown) + 0.5), sharex=True)
    axes = np.atleast_1d(axes)
    for axis, name in zip(axes, shown, strict=True):
        scores = traces[name]
        axis.plot(scores, linewidth=0.6)
        threshold = member["detectors"][name]["threshold"]
        axis.axhline(threshold, color="red", linewidth=0.8)
        for start, end in segments(labels):
            axis.axvspan(start, end, color="orange", alpha=0.3)
        low, high = np.percentile(scores, 0.5), max(np.percentile(scores, 99.9), threshold * 1.2)
        axis.set_ylim(low, high)
        axis.set_ylabel(name, fontsize=7)
    axes[-1].set_xlabel("test row (orange: labelled anomaly; red: threshold from training data)")
    figure.tight_layout()
    trace_path = folder / f"trace_{slug}.png"
    figure.savefig(trace_path, dpi=100)
    plt.close(figure)
    return [pr_path.name, trace_path.name]


def write_report(
    payload: dict[str, object],
    results: list[dict[str, object]],
    quick: bool,
    folder: Path | None = None,
    variant: str = "",
) -> Path:
    """Write the markdown report: benchmarks/REPORT.md; quick runs write results/REPORT.quick.md and a
    model variant (settings other than the defaults) results/REPORT.<variant>.md.

    `folder` puts the report and its plots elsewhere (the harness's smoke test uses a temporary folder).
    """
    if folder is not None:
        out, plots = folder / "REPORT.md", folder / "plots"
    else:
        tag = "quick" if quick else variant
        out = BENCHMARKS / (f"results/REPORT.{tag}.md" if tag else "REPORT.md")
        plots = BENCHMARKS / "results" / (f"plots_{tag}" if tag else "plots")
    settings = payload["settings"]
    machine = describe_machine()
    lines = [
        "# Detection benchmark: EdgeGAN against baselines",
        "",
        "Generated by `python -m benchmarks.detection.run` (see benchmarks/README.md); do not edit by hand.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, "
        f"torch {machine.get('torch', '-')}, onnxruntime {machine['onnxruntime']}, measured "
        f"{machine['measured_at']}.",
        "",
        *_summary(quick or bool(variant)),
        *([f"Model variant: `{variant}` (not the default settings).", ""] if variant else []),
        GENERATED_START,
        "",
        f"- One model per series. Windows of {settings['window_len']} rows (EdgeGAN's default); one "
        "window per test row, ending on that row, so every test row gets a score.",
        "- NAB: the first half of each file trains, the second half is the test part; labelled rows in the "
        "first half are blanked, so no detector trains or calibrates on them. SMD: its own train and test "
        "files.",
        f"- Thresholds come from the training part only: the last {settings['holdout_fraction']} of it "
        f"is held out and every detector's threshold is {settings['threshold_rule']} at a false-alarm "
        f"budget of {settings['false_alarm_budget']}, the rule EdgeGAN's fit uses. No threshold sees a test "
        "label or test score.",
        "- Baselines get the same windows, normalised with the training part's per-channel mean and spread.",
        "- Point-wise metrics count every test row; rows of all series in a dataset are pooled. AUC-PR is "
        "the mean over series that have labelled rows in the test part. Event recall: a labelled segment "
        "counts as found when any row inside it is flagged; delay is rows from its start to the first flag.",
        "- PA-F1 is point-adjusted F1 (one flag in a segment credits the whole segment). It is inflated: "
        "compare it with the all-ones and random-alarm references, which score high on it without looking "
        "at the data.",
        "- `EdgeGAN daemon (INT8)` is `edge-agent score`: the daemon's pipeline and alert logic (3 windows "
        "above threshold open an alert, hysteresis closes it), which is what a deployment publishes.",
        "- The last column of each timing table is the share of normal test rows that score above every "
        "holdout window. No threshold taken from the training part can keep those rows quiet short of "
        "extrapolating past everything the training part showed: it measures how far the test part has "
        "drifted, as each detector sees it, without any threshold.",
        "",
    ]
    groups: dict[str, dict[str, object]] = payload["groups"]
    for group, info in groups.items():
        rows: dict[str, dict[str, object]] = info["detectors"]
        lines += [
            f"## {group}",
            "",
            f"{len(info['series'])} series, {info['test_rows']:,} test rows, "
            f"{info['test_positive_rows']:,} labelled anomalous.",
            "",
        ]
        carried = sorted({str(r["carried_from"]) for r in _members(results, group) if "carried_from" in r})
        if carried:
            lines += [
                f"Carried from the run measured {', '.join(carried)}: not re-measured in this run "
                "(`--carry`), so its EdgeGAN rows are from the model of that run.",
                "",
            ]
        if info["failed"]:
            lines += [f"Not pooled (a detector failed): {'; '.join(info['failed'])}.", ""]
        if info.get("not_run"):
            lines += [f"Not run in time for this report: {', '.join(info['not_run'])}.", ""]
        lines += _table(rows)
        lines += ["", "Verdict for the daemon's decisions (what a deployment publishes):", ""]
        lines += verdict(rows, "EdgeGAN daemon (INT8)")
        lines += ["", "Verdict for the raw INT8 threshold:", ""]
        lines += verdict(rows, "EdgeGAN ORT INT8")
        score_settings: dict[str, object] = settings.get("score", {})
        lines += level_lines(
            rows,
            info.get("levels"),
            dict(score_settings.get("severity_levels", {})),  # type: ignore[call-overload]
            float(settings["false_alarm_budget"]),
        )
        lines += alert_rule_lines(rows, info.get("alert_rule"))
        lines += _matched_lines(info.get("matched"))
        names = _plots(results, group, plots)
        if names:
            relative = plots.relative_to(out.parent)
            lines += ["", *[f"![{name}]({relative}/{name})" for name in names]]
        lines += [
            "",
            "| detector | fit, s (all series) | scoring, us per window (mean) | normal test rows above the "
            "holdout's highest score |",
            "| --- | --- | --- | --- |",
        ]
        for name, row in rows.items():
            if not name.startswith("reference"):
                above = row.get("normal_share_above_holdout_max")
                share = "-" if above is None else f"{above:.3f}"
                lines.append(
                    f"| {name} | {row['fit_seconds_total']} | {row['score_us_per_window_mean']} | {share} |"
                )
        lines.append("")
    lines += [
        "## Per series",
        "",
        "| dataset | series | test rows | anomalous | F1: EdgeGAN daemon / INT8 / best baseline (name) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for entry in results:
        if "failed" in entry or "not_run" in entry:
            reason = entry.get("failed") or entry.get("not_run")
            lines.append(f"| {entry['group']} | {entry['series']} | - | - | {reason} |")
            continue
        detectors: dict[str, dict[str, object]] = entry["detectors"]
        f1 = {n: _f1_of(d) for n, d in detectors.items()}
        best = max((n for n in f1 if not n.startswith(OURS_PREFIX)), key=lambda n: f1[n])
        lines.append(
            f"| {entry['group']} | {entry['series']} | {entry['test_rows']} | "
            f"{entry['test_positive_rows']} | "
            f"{f1['EdgeGAN daemon (INT8)']:.3f} / {f1['EdgeGAN ORT INT8']:.3f} / {f1[best]:.3f} ({best}) |"
        )
    if not quick and not variant and folder is None:
        lines += ["", *_speed_section()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def _summary(quick: bool) -> list[str]:
    """The hand-written findings (benchmarks/detection/summary.md) for full runs."""
    return [] if quick or not SUMMARY.is_file() else [SUMMARY.read_text().rstrip(), ""]


def _split(report: str) -> tuple[str, str, str]:
    """(head up to and including the machine line, the hand-written part, the generated rest)."""
    head, found, rest = report.partition(f"\n{GENERATED_START}\n")
    if not found:
        raise ValueError(f"no '{GENERATED_START}' section: not a generated report")
    before, machine, after = head.partition("\nMachine: ")
    if not machine:
        raise ValueError("no 'Machine:' line: not a generated report")
    machine_line, _, summary = after.partition("\n")
    return f"{before}{machine}{machine_line}\n", summary.strip(), f"{GENERATED_START}\n{rest}"


def summary_of(report: str) -> str:
    """The hand-written part of a generated REPORT.md: what lies between its machine line and the first
    generated section."""
    return _split(report)[1]


def refresh_summary(report_path: Path = BENCHMARKS / "REPORT.md") -> bool:
    """Put summary.md into REPORT.md in place of its hand-written part, keeping the generated tables;
    True when the report changed.

    Why: regenerating the tables needs every series' fits (runs/detection, gone with the machine), while a
    round's findings are written in every round. Edited in REPORT.md alone, they were lost at the next
    regeneration; edited in summary.md and copied here, they are not.
    """
    head, old, generated = _split(report_path.read_text())
    new = SUMMARY.read_text().strip()
    if old == new:
        return False
    report_path.write_text(f"{head}\n{new}\n\n{generated}")
    return True


def _speed_section() -> list[str]:
    """benchmarks/results/detection_speed.json (benchmarks/detection/speed.py) as a table with ratios."""
    import json

    path = BENCHMARKS / "results" / "detection_speed.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    rows = data["detectors"]
    reference = rows["EdgeGAN ORT INT8"]
    lines = [
        "## Speed, side by side in one run",
        "",
        f"`python -m benchmarks.detection.speed` on {data['series']} ({data['train_windows']:,} training "
        f"windows): {data['machine']['cpu']}, {data['machine']['cores']} cores, Python "
        f"{data['machine']['python']}, torch {data['machine'].get('torch', '-')}, onnxruntime "
        f"{data['machine']['onnxruntime']}. Fit with each detector's default budget; scoring on one thread, "
        "microseconds per window, and in brackets the cost relative to EdgeGAN's INT8 graph at that batch.",
        "",
        "| detector | fit, s | batch 1 | batch 64 | batch 512 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        cells = []
        for batch in (1, 64, 512):
            key = f"us_per_window_batch_{batch}"
            cells.append(f"{row[key]:.1f} ({row[key] / reference[key]:.2f}x)")
        lines.append(f"| {name} | {row['fit_s']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _f1_of(detector: dict[str, object]) -> float:
    counts: dict[str, int] = detector["counts"]
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
