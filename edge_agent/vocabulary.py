"""The names the config, the CLI, the backends and the benchmarks share for backends and precisions, and the
base every such vocabulary (reasons.Reason too) is built on.

Enums whose values are the config's strings: a YAML file, a flag and code all say `int8`, and a typo is an
error that lists the valid names.
"""

from __future__ import annotations

from enum import Enum


class StableName(str, Enum):
    """A name that compares and hashes as its string value and prints as it (a plain str-mixin Enum
    prints `Class.MEMBER`)."""

    def __str__(self) -> str:
        """The plain name, in f-strings and logs."""
        return str(self.value)


class Backend(StableName):
    """Which runtime scores windows."""

    ONNXRUNTIME = "onnxruntime"  # CPU
    TENSORRT = "tensorrt"  # NVIDIA GPU; an error where it cannot run
    AUTO = "auto"  # TensorRT where it works, else onnxruntime


class Precision(StableName):
    """Which scorer graph of the bundle."""

    INT8 = "int8"
    FP32 = "fp32"


def names(vocabulary: type[Enum]) -> list[str]:
    """The values, for argparse choices and messages."""
    return [str(member.value) for member in vocabulary]
