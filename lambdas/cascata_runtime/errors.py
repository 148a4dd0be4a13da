"""Errors the runtime raises, each with a message a person can act on."""


class ConfigurationError(RuntimeError):
    """The function's environment is incomplete or wrong."""


class RecordTooLargeError(ValueError):
    """An output record exceeds the broker's per-record limit."""


class DeliveryError(RuntimeError):
    """Output records could not be written after every retry."""
