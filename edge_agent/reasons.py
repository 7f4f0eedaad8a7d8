"""Why a reading, message or command was refused: one vocabulary for the decoder, the order policy, the
daemon, the offline scorer, stats counters, the rejected topic and the metrics.

The values are stable names (DESIGN.md's stats contract): dashboards and alert rules key on them.
"""

from __future__ import annotations

from edge_agent.vocabulary import StableName


class Reason(StableName):
    """A refusal's stable name; compares and hashes as its value, so counters keyed by it read as strings."""

    # payloads (edge_agent.telemetry)
    TOO_LARGE = "too_large"
    BAD_JSON = "bad_json"
    NOT_OBJECT = "not_object"
    BAD_DEVICE = "bad_device"
    BAD_TS = "bad_ts"
    BAD_SEQ = "bad_seq"
    MISSING_VALUES = "missing_values"
    MISSING_CHANNEL = "missing_channel"
    EXTRA_CHANNEL = "extra_channel"
    NON_NUMERIC = "non_numeric"
    WRONG_CHANNEL_COUNT = "wrong_channel_count"
    TOO_MANY_READINGS = "too_many_readings"
    RAGGED_COLUMNS = "ragged_columns"
    STALE = "stale_ts"
    FUTURE = "future_ts"
    # Sparkplug B payloads (edge_agent.sparkplug)
    BAD_PROTOBUF = "bad_protobuf"
    UNKNOWN_ALIAS = "unknown_alias"
    # order policy (edge_agent.windowing)
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    # the daemon (edge_agent.ingest, edge_agent.commands, edge_agent.publisher)
    DEVICE_LIMIT = "device_limit"
    INTERNAL_ERROR = "internal_error"
    RETAINED_COMMAND = "retained_command"
    UNKNOWN_COMMAND = "unknown_command"
    SPOOL_ERROR = "spool_error"
