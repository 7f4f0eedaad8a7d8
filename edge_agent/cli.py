"""`edge-agent`: commands of the edge side. Thin: parse, call one function, map errors to exit codes.

Heavy libraries (onnxruntime) are imported inside the handlers so `--help` stays instant on a gateway.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from edge_agent.command_runner import run_command
from edge_agent.errors import EdgeAgentError


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
    score.add_argument("--backend", default="onnxruntime", help="scoring backend (default onnxruntime)")
    score.add_argument("--precision", default="int8", choices=["int8", "fp32"], help="scorer graph to use")
    run = commands.add_parser("run", help="the daemon: MQTT telemetry in, alerts and state out")
    run.add_argument("--config", type=Path, help="YAML agent config (see configs/agent.yaml)")
    run.add_argument("--broker", help="mqtt://host:port (overrides the config)")
    run.add_argument("--bundle", type=Path, help="bundle folder (overrides the config)")
    run.add_argument("--agent-id", help="agent id used in topics and the client id")
    run.add_argument("--validate-config", action="store_true", help="check the config and exit")
    return parser


def _run_daemon(args: argparse.Namespace) -> int:
    import signal
    import threading

    from edge_agent.config import broker_from_url, load_agent_config
    from edge_agent.errors import ConfigError

    overrides: dict[str, object] = {"bundle": args.bundle, "agent_id": args.agent_id}
    if args.broker:
        overrides["broker"] = broker_from_url(args.broker)
    config = load_agent_config(args.config, overrides)
    if args.validate_config:
        print(json.dumps({"valid": True, "agent_id": config.agent_id}))
        return 0
    if config.bundle is None:
        raise ConfigError("no bundle: set bundle in the config or pass --bundle")
    from edge_agent.mqtt_link import MqttLink
    from edge_agent.pipeline import ScoringPipeline, open_pipeline
    from edge_agent.service import AgentService

    def open_model(bundle: Path) -> ScoringPipeline:
        return open_pipeline(
            bundle,
            config.backend.name,
            config.backend.precision,
            config.decision,
            config.ingest.max_gap_s,
            config.ingest.reorder_depth,
        )

    link = MqttLink(config.broker, config.topics, config.agent_id, config.ingest.inbox_size)
    service = AgentService(config, open_model(config.bundle), link, open_model)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: service.request_reload())
    service.run(stop)
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from edge_agent.decision import DecisionConfig
    from edge_agent.offline import score_csv
    from edge_agent.pipeline import open_pipeline

    pipeline = open_pipeline(args.bundle, args.backend, args.precision, DecisionConfig())
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
        "thresholds": {name: t.value for name, t in manifest.thresholds.items()},
        "files": sorted(manifest.files),
    }
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `edge-agent` console script."""
    args = _parser().parse_args(argv)
    handlers = {"verify": _run_verify, "score": _run_score, "run": _run_daemon}
    return run_command("edge-agent", handlers[args.command], args, (EdgeAgentError,))
