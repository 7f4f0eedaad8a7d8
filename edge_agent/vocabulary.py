"""The names the config, the CLI, the backends and the benchmarks share for backends and precisions.

Enums whose values are the config's strings: a YAML file, a flag and code all say `int8`, and a typo is an
error that lists the valid names.
"""

from __future__ import annotations

from enum import Enum


class _Name(str, Enum):
    def __str__(self) -> str:
        """The plain name, in f-strings and logs."""
        return str(self.value)


class Backend(_Name):
    """Which runtime scores windows."""

    ONNXRUNTIME = "onnxruntime"  # CPU
    TENSORRT = "tensorrt"  # NVIDIA GPU; an error where it cannot run
    AUTO = "auto"  # TensorRT where it works, else onnxruntime


class Precision(_Name):
    """Which scorer graph of the bundle."""

    INT8 = "int8"
    FP32 = "fp32"


def names(vocabulary: type[Enum]) -> list[str]:
    """The values, for argparse choices and messages."""
    return [str(member.value) for member in vocabulary]
