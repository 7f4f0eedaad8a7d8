"""The Sparkplug B payload schema (Eclipse Sparkplug 3.0, `org.eclipse.tahu.protobuf.Payload`), built at
import from its field table with the protobuf runtime.

Why written here: the Python Sparkplug libraries pin paho-mqtt 1.x or protobuf 3.x (which onnx and
onnxruntime cannot share) or need Python 3.11, and generating code needs protoc at build time. A
descriptor built from the specification's field numbers gives the very same wire format with the
protobuf package the agent already has. Only what the agent reads or writes is declared: metric
metadata, properties, data sets, templates and extensions are skipped by the parser as unknown fields.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "org.eclipse.tahu.protobuf"
_F = descriptor_pb2.FieldDescriptorProto

# Payload.Metric: (name, number, type); the value fields 10-16 form the `value` oneof.
_METRIC_FIELDS = (
    ("name", 1, _F.TYPE_STRING),
    ("alias", 2, _F.TYPE_UINT64),
    ("timestamp", 3, _F.TYPE_UINT64),
    ("datatype", 4, _F.TYPE_UINT32),
    ("is_historical", 5, _F.TYPE_BOOL),
    ("is_transient", 6, _F.TYPE_BOOL),
    ("is_null", 7, _F.TYPE_BOOL),
    ("int_value", 10, _F.TYPE_UINT32),
    ("long_value", 11, _F.TYPE_UINT64),
    ("float_value", 12, _F.TYPE_FLOAT),
    ("double_value", 13, _F.TYPE_DOUBLE),
    ("boolean_value", 14, _F.TYPE_BOOL),
    ("string_value", 15, _F.TYPE_STRING),
    ("bytes_value", 16, _F.TYPE_BYTES),
)
_PAYLOAD_FIELDS = (
    ("timestamp", 1, _F.TYPE_UINT64),
    ("seq", 3, _F.TYPE_UINT64),
    ("uuid", 4, _F.TYPE_STRING),
    ("body", 5, _F.TYPE_BYTES),
)


class DataType(IntEnum):
    """Sparkplug's metric data types (the scalar ones the agent can score or must recognise)."""

    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14


def _optional(
    message: descriptor_pb2.DescriptorProto, name: str, number: int, kind: int
) -> descriptor_pb2.FieldDescriptorProto:
    return message.field.add(name=name, number=number, type=kind, label=_F.LABEL_OPTIONAL)  # type: ignore[arg-type]


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(
        name="edgegan_sparkplug_b.proto", package=_PACKAGE, syntax="proto2"
    )
    payload = file.message_type.add(name="Payload")
    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    for name, number, kind in _METRIC_FIELDS:
        field = _optional(metric, name, number, kind)
        if number >= 10:
            field.oneof_index = 0
    for name, number, kind in _PAYLOAD_FIELDS:
        _optional(payload, name, number, kind)
    payload.field.add(
        name="metrics",
        number=2,
        type=_F.TYPE_MESSAGE,  # type: ignore[arg-type]
        label=_F.LABEL_REPEATED,  # type: ignore[arg-type]
        type_name=f".{_PACKAGE}.Payload.Metric",
    )
    payload.extension_range.add(start=6, end=536870912)  # the specification reserves 6 to max
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
# Any: a class built at run time has no static attributes for mypy to check.
Payload: Any = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.Payload"))
