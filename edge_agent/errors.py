"""One root exception for the agent, so callers can tell our errors (exit 2) from bugs (exit 1)."""


class EdgeAgentError(Exception):
    """Root of every error the agent raises on purpose; its message is one line for the user."""


class ConfigError(EdgeAgentError):
    """A configuration file or flag is invalid."""


class BundleError(EdgeAgentError):
    """A model bundle is missing, tampered with, or does not match the schema or shapes."""


class DataError(EdgeAgentError):
    """Input data (a CSV file or a payload) cannot be used; the message names where."""


class BackendUnavailable(EdgeAgentError):
    """A scoring backend cannot run here; the message says what is missing."""
