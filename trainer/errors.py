"""The trainer's root exception: anything a user can cause ends as one line and exit code 2."""


class TrainerError(Exception):
    """Root of the errors the trainer raises on purpose."""


class QualityGateError(TrainerError):
    """A check on the trained model failed (parity, collapse, detection); the bundle is not written."""
