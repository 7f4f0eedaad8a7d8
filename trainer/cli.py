"""Fit a model bundle from CSV files of normal operation, run the demo, make synthetic data with a quality
and privacy report, or make a key pair that signs bundles."""

# Each handler parses, calls one function and lets run_command map its errors to exit codes.

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.command_runner import run_command
from edge_agent.errors import EdgeAgentError
from trainer.errors import TrainerError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from trainer.build import BuildResult
    from trainer.config import TrainConfig
    from trainer.synthetic.report import SynthReport

    F32Array = npt.NDArray[np.float32]

log = logging.getLogger("trainer")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-trainer", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="train on normal CSV data and write a model bundle")
    fit.add_argument(
        "--data", type=Path, required=True, help="CSV file or folder of CSV files of normal operation"
    )
    fit.add_argument("--out", type=Path, required=True, help="bundle folder to write (replaced atomically)")
    _add_fit_options(fit)
    assets = commands.add_parser(
        "fit-assets", help="one bundle per asset (sub-folder or file of --data), fitted in parallel"
    )
    assets.add_argument("--data", type=Path, required=True, help="folder: one sub-folder or CSV per asset")
    assets.add_argument("--out", type=Path, required=True, help="folder for the bundles and summary.md/json")
    assets.add_argument(
        "--workers",
        type=int,
        default=2,
        help="parallel fits (fit.threads is cut to each one's share of the cores)",
    )
    _add_fit_options(assets)
    demo = commands.add_parser(
        "demo",
        help="the whole story: pump-like data, a model, a broker, the agent and a faulty simulated fleet",
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for everything it writes")
    demo.add_argument("--rows", type=int, default=6000, help="rows of demo data at 1 Hz")
    demo.add_argument("--devices", type=int, default=80, help="simulated devices (a quarter get faults)")
    demo.add_argument("--rate", type=float, default=10.0, help="readings per second per simulated device")
    demo.add_argument(
        "--duration",
        type=float,
        default=180.0,
        help="seconds the simulated fleet runs (80 devices x 180 s: 4 device-hours, 3 of them clean)",
    )
    demo.add_argument(
        "--no-fleet", action="store_true", help="stop after the bundle (no broker, agent, fleet)"
    )
    demo.add_argument(
        "--broker-kind",
        choices=["auto", "mosquitto", "embedded"],
        default="auto",
        help="Mosquitto when installed (auto), or the embedded pure-Python broker",
    )
    _add_fit_options(demo)
    keygen = commands.add_parser(
        "keygen", help="an Ed25519 key pair for signing bundles (private key for fits, public for agents)"
    )
    keygen.add_argument("--out", type=Path, required=True, help="folder for edgegan-signing.key and .pub")
    synth = commands.add_parser(
        "synth", help="synthetic sensor data from a bundle's generator, with quality and privacy reports"
    )
    synth.add_argument("--bundle", type=Path, required=True, help="bundle folder")
    synth.add_argument("--rows", type=int, required=True, help="rows to generate")
    synth.add_argument("--out", type=Path, required=True, help="output .csv (or .parquet with pyarrow)")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same rows")
    synth.add_argument("--truncation", type=float, default=0.7, help="latent std: lower is more typical")
    synth.add_argument("--data", type=Path, help="the real training data: enables the quality/privacy report")
    synth.add_argument("--config", type=Path, help="training config (for its holdout split)")
    synth.add_argument("--report", type=Path, help="report folder (default: beside --out)")
    synth.add_argument(
        "--max-closer-to-training",
        type=float,
        default=0.65,
        help="memorisation threshold: share of synthetic windows nearer to training than to held-out data",
    )
    synth.add_argument(
        "--refuse-memorised", action="store_true", help="write nothing when memorisation passes the threshold"
    )
    return parser


def _add_fit_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", type=Path, help="YAML training config (see configs/trainer.yaml)")
    command.add_argument("--epochs", type=int, help="GAN epochs (overrides the config)")
    command.add_argument("--seed", type=int, help="random seed (overrides the config)")
    command.add_argument("--columns", help="comma-separated channel names to use")
    command.add_argument("--sign-key", type=Path, help="Ed25519 private key (PEM) that signs the bundle")
    command.add_argument("--json", action="store_true", help="print the fit summary as JSON, not a table")
    command.add_argument(
        "--no-auto",
        action="store_true",
        help="fit exactly the configured score weights (fit.auto: false); by default each fit chooses them",
    )


def _load_config(args: argparse.Namespace) -> TrainConfig:
    from trainer.config import load_train_config

    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    return load_train_config(
        args.config,
        {
            "fit": {"epochs": args.epochs, "seed": args.seed, "auto": False if args.no_auto else None},
            "data": {"columns": columns},
            "bundle": {"sign_key": args.sign_key},
        },
    )


def _run_fit(args: argparse.Namespace) -> int:
    from trainer.build import build_bundle_in
    from trainer.distributed import join_from_environment

    world = join_from_environment()  # several ranks when started by torchrun
    result = build_bundle_in(world, args.data, args.out, _load_config(args))
    if result is not None:  # rank 0 writes the bundle and reports
        _print_summary(result, args.json)
    return 0


def _run_fit_assets(args: argparse.Namespace) -> int:
    from trainer.asset_fit import fit_assets, summary_table

    if args.workers < 1:
        raise TrainerError(f"--workers {args.workers}: must be at least 1")
    results = fit_assets(args.data, args.out, _load_config(args), args.workers)
    print(summary_table(results))
    failed = [r.asset for r in results if r.status != "ok"]
    if failed:
        log.error("%d of %d assets failed: %s", len(failed), len(results), ", ".join(failed))
        return 1
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from trainer.build import build_bundle
    from trainer.demo.pump_data import write_pump_csv

    if args.rows < 200:
        raise TrainerError(f"--rows {args.rows}: the demo needs at least 200 rows")
    data = write_pump_csv(args.out / "pump_normal.csv", rows=args.rows, seed=7)
    log.info("demo data: %s (%d rows, 8 channels)", data, args.rows)
    result = build_bundle(data, args.out / "bundle", _load_config(args))
    _print_summary(result, args.json)
    if args.no_fleet:
        return 0
    from trainer.demo.run import run_fleet

    seed = args.seed if args.seed is not None else 7
    fleet = run_fleet(
        result.bundle.path,
        args.out / "fleet",
        args.devices,
        args.rate,
        args.duration,
        seed,
        args.broker_kind,
    )
    assert fleet.evaluation is not None  # run_fleet checks it
    print(fleet.evaluation.table())
    log.info("figures: %s", args.out / "fleet" / "evaluation.json")
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    from trainer.synthetic.generate import synthesize, write_synthetic

    channels, timestamps, values = synthesize(args.bundle, args.rows, args.seed, args.truncation)
    if args.data is None:
        log.warning("no --data: the privacy check did not run (it needs the real training data)")
    else:
        from trainer.synthetic.report import memorisation_verdict

        report = _synth_report(args, channels, values)
        memorised, message = memorisation_verdict(report.privacy, args.max_closer_to_training)
        if memorised:
            if args.refuse_memorised:
                raise TrainerError(message + "; nothing written (--refuse-memorised)")
            log.warning("%s", message)
        else:
            log.info("%s", message)
    write_synthetic(args.out, channels, timestamps, values)
    log.info("wrote %d rows to %s", args.rows, args.out)
    return 0


def _synth_report(args: argparse.Namespace, channels: list[str], values: F32Array) -> SynthReport:
    import numpy as np

    from edge_agent.bundle import load_bundle
    from trainer.config import load_train_config
    from trainer.synthetic.report import build_report, split_like_the_fit, write_report

    manifest = load_bundle(args.bundle).manifest
    train, holdout = split_like_the_fit(args.data, channels, load_train_config(args.config))
    report = build_report(
        np.asarray(values, dtype=np.float32),
        train,
        holdout,
        manifest.window_len,
        np.asarray(manifest.normalisation.mean, dtype=np.float32),
        np.asarray(manifest.normalisation.scale, dtype=np.float32),
        seed=args.seed,
    )
    folder = args.report or args.out.parent / f"{args.out.stem}.report"
    path = write_report(report, folder, channels, args.max_closer_to_training)
    log.info("report: %s", path)
    return report


def _print_summary(result: BuildResult, as_json: bool = False) -> None:
    """The fit summary table on stdout (`--json`: the same figures as JSON, for scripts)."""
    from trainer.fit_summary import summary_table

    if not as_json:
        print(summary_table(result.bundle, result.fit_seconds))
        return
    manifest = result.bundle.manifest
    validation = manifest.validation
    summary = {
        "bundle": str(result.bundle.path),
        "bundle_id": manifest.bundle_id,
        "fit_seconds": round(result.fit_seconds, 1),
        "thresholds": {name: threshold.value for name, threshold in manifest.thresholds.items()},
        "detection": validation["detection"],
        "int8_vs_fp32": validation["int8_vs_fp32"],
    }
    print(json.dumps(summary, indent=2))


def _run_keygen(args: argparse.Namespace) -> int:
    from edge_agent.signing import generate_keypair

    private, public = generate_keypair(args.out)
    print(json.dumps({"private_key": str(private), "public_key": str(public)}))
    log.info("keep %s off the gateways; list %s in the agents' trusted_keys", private, public)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edge-trainer` console script."""
    args = _parser().parse_args(argv)
    handlers = {
        "fit": _run_fit,
        "fit-assets": _run_fit_assets,
        "demo": _run_demo,
        "synth": _run_synth,
        "keygen": _run_keygen,
    }
    return run_command("edge-trainer", handlers[args.command], args, (TrainerError, EdgeAgentError))
