"""The agent's configuration: one pydantic model per concern, YAML first, explicit flags on top.

Unknown keys are errors and name their line, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.decision import DecisionConfig
from edge_agent.errors import ConfigError
from edge_agent.vocabulary import Backend, Precision
from edge_agent.yaml_config import load_yaml_model

DEFAULT_MODEL = "default"
MODEL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BrokerConfig(_Section):
    """Where and how to connect."""

    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    client_id: str | None = Field(None, description="default: edgegan-<agent_id>")
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive")
    session_expiry_s: int = Field(
        3600, ge=0, description="MQTT 5: how long the broker keeps our QoS 1 backlog while we are away"
    )
    username: str | None = Field(None, description="user name; or set password_env")
    password_env: str | None = Field(
        None, description="name of the environment variable holding the password"
    )
    tls_ca: Path | None = Field(None, description="CA certificate; setting it enables TLS")
    tls_cert: Path | None = Field(None, description="client certificate (mutual TLS)")
    tls_key: Path | None = Field(None, description="client key (mutual TLS)")
    reconnect_min_s: int = Field(1, ge=1, description="first reconnect delay")
    reconnect_max_s: int = Field(30, ge=1, description="longest reconnect delay (exponential backoff)")

    def password(self) -> str | None:
        """Read at connect time, never stored in the config or logged."""
        if self.password_env is None:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError(f"broker.password_env: environment variable {self.password_env} is not set")
        return value


class TopicsConfig(_Section):
    """Topic templates; {device} and {agent_id} are filled in."""

    telemetry: str = Field("sensors/+/telemetry", description="subscription; the device is the '+' level")
    alert: str = Field("edgegan/alert/{device}")
    state: str = Field("edgegan/state/{device}")
    agent_status: str = Field("edgegan/agent/{agent_id}/status")
    agent_stats: str = Field("edgegan/agent/{agent_id}/stats")
    rejected: str = Field("edgegan/agent/{agent_id}/rejected")
    command: str = Field("edgegan/agent/{agent_id}/cmd/+", description="commands; the '+' level is the name")
    command_response: str = Field(
        "edgegan/agent/{agent_id}/response/{command}",
        description="answers to commands: {id, command, status: ok|error, detail}",
    )
    device_availability: str = Field(
        "edgegan/device/{device}/availability", description="retained online/offline per device"
    )
    shared_group: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="subscribe to telemetry as $share/<group>/<telemetry>: the broker deals devices out "
        "among the group's agents (EMQX with hash_topic keeps each device on one agent); use shard.count 1",
    )
    score: str | None = Field(
        None, description="optional: scored windows as JSON (QoS 0), for dashboards that plot scores"
    )
    score_per: Literal["window", "message"] = Field(
        "window",
        description="window: a score message for every scored window; message: one per telemetry message, "
        "for its newest reading (a batch of 100 readings gives one score message instead of 100)",
    )

    @field_validator("command")
    @classmethod
    def _command_name_level(cls, value: str) -> str:
        if not value.endswith("/+") or value.count("+") != 1 or "#" in value:
            raise ValueError("command must end with '/+' (the command name) and hold no other wildcard")
        return value

    @field_validator("telemetry")
    @classmethod
    def _one_device_level(cls, value: str) -> str:
        if value.split("/").count("+") != 1 or "#" in value:
            raise ValueError("telemetry must contain exactly one '+' level (the device id) and no '#'")
        return value


class BackendConfig(_Section):
    """Which runtime scores windows."""

    name: Backend = Field(
        Backend.ONNXRUNTIME,
        description="onnxruntime (CPU), tensorrt (GPU; an error if it cannot run), or auto (TensorRT where "
        "it works, else onnxruntime)",
    )
    precision: Precision = Field(Precision.INT8, description="scorer graph")
    threads: int = Field(1, ge=1, description="intra-op threads (onnxruntime on CPU)")


class IngestConfig(_Section):
    """Limits on what devices may send."""

    max_payload_bytes: int = Field(
        262144, ge=64, description="larger messages are refused whole (a batch of readings counts as one)"
    )
    max_readings_per_message: int = Field(
        1000, ge=1, description="a batched message with more readings is refused whole"
    )
    max_future_s: float = Field(30.0, ge=0, description="readings further ahead of our clock are rejected")
    max_age_s: float = Field(3600.0, gt=0, description="readings older than this are rejected as stale")
    max_gap_s: float | None = Field(None, description="a longer silence restarts the device's window")
    offline_after_s: float | None = Field(
        300.0, gt=0, description="a device silent this long is published offline; null disables"
    )
    reorder_depth: int = Field(
        0,
        ge=0,
        le=64,
        description="readings held per device so that late ones still enter in order (adds that many "
        "sample periods of latency); 0 drops any late reading as out_of_order",
    )
    inbox_size: int = Field(10000, ge=10, description="bounded queue between the MQTT thread and scoring")
    batch_max: int = Field(1024, ge=1, description="readings scored per loop iteration at most")
    batch_wait_s: float = Field(0.005, ge=0, le=1, description="added latency allowed to form a batch")
    max_devices: int = Field(
        10_000,
        ge=1,
        description="devices the agent keeps state for; readings of further new devices are rejected as "
        "device_limit (a flood of made-up ids cannot exhaust memory)",
    )
    forget_after_s: float = Field(
        3600.0,
        gt=0,
        description="a device silent this long (and with no open alert) is evicted: its state is dropped and "
        "its retained availability and state topics are cleared",
    )


class SparkplugConfig(_Section):
    """Sparkplug B telemetry (spBv1.0): DDATA metrics scored as readings, births and deaths followed."""

    enabled: bool = Field(False, description="subscribe to spBv1.0 births, deaths and data besides JSON")
    group_id: str = Field("+", description="the Sparkplug group to follow; + follows every group")
    ndata: bool = Field(False, description="also score node-level metrics (NDATA), as device {node}")
    device_id: str = Field(
        "{node}-{device}",
        description="the agent's id for a Sparkplug device ({group}, {node}, {device}); must come out "
        "matching ^[A-Za-z0-9_-]{1,64}$",
    )
    metric_channels: dict[str, str] = Field(
        default_factory=dict,
        description="metric name -> bundle channel, for names that differ; otherwise a metric whose name, "
        "or last path segment, equals a channel feeds it and other metrics are ignored",
    )
    rebirth_interval_s: float = Field(
        10.0, gt=0, description="at most one rebirth request (NCMD Node Control/Rebirth) per node this often"
    )
    max_metrics_per_message: int = Field(
        10_000, ge=1, description="a DDATA with more metrics is refused whole"
    )
    host_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="act as this Sparkplug primary host: keep spBv1.0/STATE/{host_id} online (retained, with "
        "the offline state as its will), for edge nodes configured to publish only while their host is up",
    )

    @model_validator(mode="after")
    def _device_id_names_the_device(self) -> SparkplugConfig:
        if "{device}" not in self.device_id:
            raise ValueError("sparkplug.device_id must contain {device}")
        return self


class ShardConfig(_Section):
    """Split a fleet across agents: each device is scored by exactly one of `count` agents.

    Every agent subscribes to all telemetry and keeps the devices whose CRC-32 of the id, modulo `count`,
    equals `index`. Mosquitto's shared subscriptions cannot do this (they deal messages out round robin,
    splitting a device's stream); on EMQX a `$share` subscription with the hash_topic strategy can.
    """

    index: int = Field(0, ge=0, description="this agent's shard, 0-based")
    count: int = Field(1, ge=1, description="number of agents sharing the fleet")

    @model_validator(mode="after")
    def _index_in_range(self) -> ShardConfig:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} must be below count {self.count}")
        return self


class StatsConfig(_Section):
    """Periodic counters."""

    interval_s: float = Field(10.0, gt=0)
    prometheus_port: int | None = Field(None, ge=1, le=65535, description="serve /metrics on this port")
    prometheus_address: str = Field("127.0.0.1", description="address the metrics endpoint binds to")
    rejected_per_s: float = Field(1.0, gt=0, description="rate limit of messages on the rejected topic")
    rejected_summary_s: float = Field(
        60.0, gt=0, description="refused readings are summarised in the log (INFO) at most this often"
    )
    max_devices_reported: int = Field(
        1000, ge=0, description="per-device health in stats and metrics: at most this many, worst first"
    )


class StatusPageConfig(_Section):
    """A read-only status page in the browser (edge_agent/status_page.py); off unless a port is set."""

    port: int | None = Field(None, ge=0, le=65535, description="serve the page here (0: any free port)")
    address: str = Field("127.0.0.1", description="address it binds to; localhost unless you open it up")
    refresh_s: float = Field(5.0, gt=0, description="the page reloads itself this often")


class SpoolConfig(_Section):
    """Store-and-forward of alerts and state changes (see edge_agent/spool.py)."""

    path: Path | None = Field(
        None,
        description="SQLite file that keeps alerts and state changes until the broker has them; null keeps "
        "them in memory only (lost if the agent restarts during an outage)",
    )
    max_bytes: int = Field(50_000_000, ge=1024, description="payload bytes the spool may hold")
    max_age_s: float = Field(7 * 86400.0, gt=0, description="older messages are dropped, not sent")
    on_full: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest", description="which message gives way when the spool is full"
    )


class HomeAssistantConfig(_Section):
    """Home Assistant MQTT discovery (opt-in)."""

    enabled: bool = Field(False, description="announce a binary sensor and a score sensor per device")
    discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_/-]+$")
    status_topic: str = Field(
        "homeassistant/status", description="Home Assistant's birth topic: `online` there re-announces"
    )


class RouteConfig(_Section):
    """Devices whose id matches `devices` (shell-style pattern, e.g. `fan-*`) are scored by `bundle`."""

    devices: str = Field(min_length=1)
    bundle: str = Field(description="a name from `bundles`, or `default` for `bundle`")


class AgentConfig(_Section):
    """The whole daemon configuration."""

    agent_id: str = Field("edge-1", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    bundle: Path | None = Field(None, description="model bundle folder (the `default` model)")
    bundles: dict[str, Path] = Field(
        default_factory=dict, description="more models by name, for gateways watching different machines"
    )
    routes: list[RouteConfig] = Field(
        default_factory=list, description="device pattern -> model name; first match wins, else default"
    )
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    shard: ShardConfig = Field(default_factory=ShardConfig)
    sparkplug: SparkplugConfig = Field(default_factory=SparkplugConfig)
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    status_page: StatusPageConfig = Field(default_factory=StatusPageConfig)
    trusted_keys: list[Path] = Field(
        default_factory=list,
        description="Ed25519 public keys (PEM); when set, every bundle must carry a bundle.sig by one of "
        "them",
    )
    bundle_roots: list[Path] = Field(
        default_factory=list,
        description="folders a reload command may load bundles from; empty: the folders holding the "
        "configured bundle and bundles",
    )

    @model_validator(mode="after")
    def _routes_name_known_bundles(self) -> AgentConfig:
        for name in self.bundles:
            if name == DEFAULT_MODEL or not MODEL_NAME.match(name):
                raise ValueError(f"bundles: {name!r} must match {MODEL_NAME.pattern} and not be 'default'")
        for index, route in enumerate(self.routes):
            if route.bundle != DEFAULT_MODEL and route.bundle not in self.bundles:
                known = ", ".join([DEFAULT_MODEL, *self.bundles])
                raise ValueError(f"routes[{index}].bundle {route.bundle!r} is not one of: {known}")
        return self

    @model_validator(mode="after")
    def _score_topic_for_home_assistant(self) -> AgentConfig:
        if self.homeassistant.enabled and self.topics.score is None:
            raise ValueError(
                "homeassistant.enabled needs topics.score (the score sensor's topic), e.g. "
                "'edgegan/score/{device}'"
            )
        return self


def broker_from_url(url: str) -> dict[str, object]:
    """`mqtt://host:port` or `mqtts://host:port` as broker settings; `?protocol=3.1.1` for brokers without
    MQTT 5 (NATS's MQTT listener)."""
    parts = urlsplit(url)
    if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
        raise ConfigError(f"--broker {url!r}: expected mqtt://host:port or mqtts://host:port")
    settings: dict[str, object] = {
        "host": parts.hostname,
        "port": parts.port or (8883 if parts.scheme == "mqtts" else 1883),
    }
    if parts.username:
        settings["username"] = parts.username
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"protocol"})
    if unknown:
        raise ConfigError(f"--broker {url!r}: unknown option {unknown[0]!r} (only protocol=5 or 3.1.1)")
    if "protocol" in query:
        protocol = query["protocol"][-1]
        if protocol not in {"5", "3.1.1"}:
            raise ConfigError(f"--broker {url!r}: protocol must be 5 or 3.1.1")
        settings["protocol"] = protocol
    return settings


def load_agent_config(path: Path | None, overrides: dict[str, object] | None = None) -> AgentConfig:
    """YAML (optional), then non-None overrides; nested sections merge key by key."""
    return load_yaml_model(AgentConfig, path, overrides)
