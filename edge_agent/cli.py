"""`edge-agent`: commands of the edge side. Thin: parse, call one function, map errors to exit codes.

Heavy libraries (onnxruntime) are imported inside the handlers so `--help` stays instant on a gateway.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.command_runner import run_command
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.vocabulary import Backend, Precision, names

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig

log = logging.getLogger("edge_agent.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description="EdgeGAN edge agent")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-json", action="store_true", help="structured logs: one JSON object per line")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser(
        "verify", help="check a model bundle (hashes, schema, shapes) and summarise it"
    )
    verify.add_argument("--bundle", type=Path, required=True, help="bundle folder")
    score = commands.add_parser("score", help="score a CSV offline through the daemon's own pipeline")
    score.add_argument("--bundle", type=Path, required=True, help="bundle folder")
    score.add_argument("--data", type=Path, required=True, help="CSV with the bundle's channels")
    score.add_argument(
        "--out", type=Path, required=True, help="output CSV: line, ts, score, anomaly, rejected"
    )
    score.add_argument(
        "--backend",
        default=Backend.ONNXRUNTIME.value,
        choices=names(Backend),
        help="scoring backend",
    )
    score.add_argument(
        "--precision", default=Precision.INT8.value, choices=names(Precision), help="scorer graph to use"
    )
    score.add_argument(
        "--level",
        help="the bundle's severity level (e.g. critical) that starts alerts; default: its threshold",
    )
    run = commands.add_parser("run", help="the daemon: MQTT telemetry in, alerts and state out")
    run.add_argument("--config", type=Path, help="YAML agent config (see configs/agent.yaml)")
    run.add_argument("--broker", help="mqtt://host:port (overrides the config)")
    run.add_argument("--bundle", type=Path, help="bundle folder (overrides the config)")
    run.add_argument("--agent-id", help="agent id used in topics and the client id")
    run.add_argument("--validate-config", action="store_true", help="check the config and exit")
    _add_simulate(commands)
    return parser


def _add_simulate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = commands.add_parser(
        "simulate", help="publish a simulated fleet (GAN-generated, with faults and ground truth)"
    )
    sim.add_argument("--bundle", type=Path, help="bundle folder (its generator makes the readings)")
    sim.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://host:port")
    sim.add_argument(
        "--config",
        type=Path,
        help="the agent's YAML config: the fleet publishes on its telemetry topics and collects its alerts",
    )
    sim.add_argument("--scenario", type=Path, help="YAML scenario (see configs/scenario.yaml)")
    sim.add_argument("--devices", type=int, help="number of simulated devices")
    sim.add_argument("--rate", type=float, help="readings per second per device")
    sim.add_argument("--duration", type=float, help="seconds to run")
    sim.add_argument("--seed", type=int, help="seed of the whole run")
    sim.add_argument(
        "--inject",
        help="comma-separated fault kinds injected at random, or 'none' for clean streams "
        "(default: a mix of anomaly kinds on half the devices)",
    )
    sim.add_argument(
        "--no-vet",
        action="store_true",
        help="publish the generator's streams as drawn; by default a chunk of stream with a window above "
        "the bundle's alert threshold is drawn again, so clean devices stay clean",
    )
    sim.add_argument("--truth-file", type=Path, help="write ground truth here (JSON lines)")
    sim.add_argument("--evaluate", action="store_true", help="collect the agent's alerts and print the table")
    sim.add_argument("--report", type=Path, help="write the run's figures (and evaluation) as JSON")
    sim.add_argument("--replay", type=Path, help="publish this CSV instead of generated data")
    sim.add_argument("--replay-device", default="replay-1", help="device id for --replay")
    sim.add_argument("--speed", type=float, default=1.0, help="replay this many times faster")
    sim.add_argument(
        "--columns",
        help="--replay: comma-separated columns to publish as channels (default: the --bundle's channels "
        "when given, else every numeric column)",
    )


def _run_daemon(args: argparse.Namespace) -> int:
    import signal
    import threading

    from edge_agent.config import broker_from_url, load_agent_config

    overrides: dict[str, object] = {"bundle": args.bundle, "agent_id": args.agent_id}
    if args.broker:
        overrides["broker"] = broker_from_url(args.broker)
    config = load_agent_config(args.config, overrides)
    if args.validate_config:
        checked = _check_bundles_against_config(config)
        print(json.dumps({"valid": True, "agent_id": config.agent_id, "bundles_checked": checked}))
        return 0
    from edge_agent.service import build_agent

    service = build_agent(config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: service.request_reload_all())
    service.run(stop)
    return 0


def _check_bundles_against_config(config: AgentConfig) -> list[str]:
    """What `run` would refuse at start: every configured bundle loads (signature included, with
    trusted_keys) and has the severity level decision.level names. Returns the bundles checked."""
    from edge_agent.backends import PRECISION_FILES
    from edge_agent.bundle import load_bundle

    configured = [config.bundle, *config.bundles.values()]
    checked = []
    for path in (p for p in configured if p is not None):
        bundle = load_bundle(path, trusted_keys=config.trusted_keys)
        precision = bundle.served_precision(config.backend.precision)
        try:
            bundle.threshold_for(PRECISION_FILES[precision]).at_level(config.decision.level)
        except EdgeAgentError as err:
            raise ConfigError(f"decision.level: {path}: {err}") from None
        checked.append(str(path))
    return checked


def _run_score(args: argparse.Namespace) -> int:
    from edge_agent.config import BackendConfig
    from edge_agent.decision import DecisionConfig
    from edge_agent.offline import score_csv
    from edge_agent.pipeline import open_pipeline

    backend = BackendConfig(name=args.backend, precision=args.precision)
    pipeline = open_pipeline(args.bundle, backend, DecisionConfig(level=args.level))
    summary = score_csv(pipeline, args.data, args.out)
    print(json.dumps({"out": str(args.out), **dataclasses.asdict(summary)}))
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from edge_agent.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    manifest = bundle.manifest
    summary = {
        "bundle_id": manifest.bundle_id,
        "channels": manifest.channels,
        "window_len": manifest.window_len,
        "hop_len": manifest.hop_len,
        "fit_seeds": [m.seed for m in manifest.score.members] or [manifest.provenance.seed],
        "thresholds": {name: t.value for name, t in manifest.thresholds.items()},
        "severity_levels": {
            name: {level: lv.value for level, lv in t.levels.items()}
            for name, t in manifest.thresholds.items()
        },
        "files": sorted(manifest.files),
        "refused": dict(manifest.refused),
    }
    print(json.dumps(summary, indent=2))
    verdict = f"bundle {manifest.bundle_id}: verified (hashes, schema, shapes)"
    if manifest.refused:
        verdict += "; refused at fit time, served as FP32: " + "; ".join(
            f"{name} ({reason})" for name, reason in manifest.refused.items()
        )
    print(verdict, file=sys.stderr)
    from edge_agent.fit_choice import choice_table, level_left_out_line

    left_out = level_left_out_line(manifest.score.level_left_out)
    if left_out is not None:
        print(left_out, file=sys.stderr)
    auto = manifest.validation.get("auto")
    candidates = auto.get("candidates") if isinstance(auto, dict) else None
    if isinstance(auto, dict) and isinstance(candidates, list):
        winner = str(auto.get("winner"))
        rows = [row for row in candidates if isinstance(row, dict)]
        print(
            f"settings chosen at fit time: {winner}\n{choice_table(rows, winner)}",
            file=sys.stderr,
        )
    return 0


def _run_simulate(args: argparse.Namespace) -> int:
    from edge_agent.config import BrokerConfig, broker_from_url, load_agent_config
    from edge_agent.simulator.run import replay_csv, simulate
    from edge_agent.simulator.scenario import load_scenario

    broker = BrokerConfig.model_validate(broker_from_url(args.broker))
    topics = load_agent_config(args.config).topics if args.config is not None else None
    log.info("simulate: publishing to the broker at %s:%d (--broker to change)", broker.host, broker.port)
    if args.replay is not None:
        columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
        if columns is None and args.bundle is not None:
            from edge_agent.bundle import load_bundle

            columns = list(load_bundle(args.bundle).manifest.channels)
        report = replay_csv(args.replay, broker, args.replay_device, args.speed, columns, topics)
        summary: dict[str, object] = {"published": report.published, "seconds": round(report.seconds, 3)}
        summary["max_lag_s"] = round(report.max_lag_s, 4)
        summary["skipped_rows"] = report.planned_readings - report.published
        print(json.dumps(summary))
        return 0
    if args.bundle is None:
        raise ConfigError("simulate needs --bundle (or --replay CSV)")
    overrides: dict[str, object] = {
        "devices": args.devices,
        "rate_hz": args.rate,
        "duration_s": args.duration,
        "seed": args.seed,
        "vet": False if args.no_vet else None,
    }
    if args.inject is not None:
        kinds = [k.strip() for k in args.inject.split(",") if k.strip()]
        overrides["random"] = {"kinds": [] if kinds == ["none"] else kinds}
    scenario = load_scenario(args.scenario, overrides)
    alerts_file = args.report.with_suffix(".alerts.jsonl") if args.report is not None else None
    result = simulate(
        args.bundle,
        broker,
        scenario,
        args.truth_file,
        score_alerts=args.evaluate,
        alerts_file=alerts_file,
        topics=topics,
    )
    figures: dict[str, object] = {
        "devices": result.report.devices,
        "published": result.report.published,
        "seconds": round(result.report.seconds, 3),
        "rate_per_s": round(result.report.rate_per_s, 1),
        "planned_per_s": round(scenario.devices * scenario.rate_hz, 1),
        "max_lag_s": round(result.report.max_lag_s, 4),
        "faults": len(result.report.truth),
    }
    if result.report.vetting is not None:
        figures["vetting"] = result.report.vetting
        if result.report.vetting["kept_above"]:
            log.warning(
                "%d of %d chunks of stream kept a window above the alert threshold after every redraw: "
                "clean devices may alert there without a fault",
                result.report.vetting["kept_above"],
                result.report.vetting["chunks"],
            )
    if result.evaluation is not None:
        print(result.evaluation.table())
        figures["evaluation"] = result.evaluation.as_dict()
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "evaluation"}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edge-agent` console script."""
    args = _parser().parse_args(argv)
    handlers = {
        "verify": _run_verify,
        "score": _run_score,
        "run": _run_daemon,
        "simulate": _run_simulate,
    }
    return run_command("edge-agent", handlers[args.command], args, (EdgeAgentError,))
