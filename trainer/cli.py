"""`edge-trainer`: fit a bundle from CSV, or make demo data and fit on it. Thin: parse, call, map errors."""

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
    from trainer.build import BuildResult
    from trainer.config import TrainConfig

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
    demo = commands.add_parser(
        "demo",
        help="the whole story: pump-like data, a model, a broker, the agent and a faulty simulated fleet",
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder for everything it writes")
    demo.add_argument("--rows", type=int, default=6000, help="rows of demo data at 1 Hz")
    demo.add_argument("--devices", type=int, default=20, help="simulated devices")
    demo.add_argument("--rate", type=float, default=10.0, help="readings per second per simulated device")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds the simulated fleet runs")
    demo.add_argument(
        "--no-fleet", action="store_true", help="stop after the bundle (no broker, agent, fleet)"
    )
    _add_fit_options(demo)
    return parser


def _add_fit_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", type=Path, help="YAML training config (see configs/trainer.yaml)")
    command.add_argument("--epochs", type=int, help="GAN epochs (overrides the config)")
    command.add_argument("--seed", type=int, help="random seed (overrides the config)")
    command.add_argument("--columns", help="comma-separated channel names to use")


def _load_config(args: argparse.Namespace) -> TrainConfig:
    from trainer.config import load_train_config

    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    return load_train_config(
        args.config, {"fit": {"epochs": args.epochs, "seed": args.seed}, "data": {"columns": columns}}
    )


def _run_fit(args: argparse.Namespace) -> int:
    from trainer.build import build_bundle

    result = build_bundle(args.data, args.out, _load_config(args))
    _print_summary(result)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from trainer.build import build_bundle
    from trainer.demo_data import write_pump_csv

    if args.rows < 200:
        raise TrainerError(f"--rows {args.rows}: the demo needs at least 200 rows")
    data = write_pump_csv(args.out / "pump_normal.csv", rows=args.rows, seed=7)
    log.info("demo data: %s (%d rows, 8 channels)", data, args.rows)
    result = build_bundle(data, args.out / "bundle", _load_config(args))
    _print_summary(result)
    if args.no_fleet:
        return 0
    from trainer.fleet_demo import run_fleet

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


def _print_summary(result: BuildResult) -> None:
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edge-trainer` console script."""
    args = _parser().parse_args(argv)
    handlers = {"fit": _run_fit, "demo": _run_demo}
    return run_command("edge-trainer", handlers[args.command], args, (TrainerError, EdgeAgentError))
