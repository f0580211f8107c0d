"""Errors of the Kafka layer; all derive from :class:`recsys.exceptions.StreamrecError`."""

from __future__ import annotations

from recsys.exceptions import ConfigurationError, StreamrecError
from recsys.records import RecResponse

__all__ = [
    "BrokerUnavailable",
    "DeliveryError",
    "EmbeddedStackError",
    "PartitionMismatch",
    "PortInUse",
    "RequestExpired",
    "RequestTimeout",
    "SchemaCompatibilityError",
    "SchemaDriftError",
    "SchemaNotFound",
    "SerializationError",
]


class SerializationError(StreamrecError):
    """Bytes could not be turned into a record (or back): bad magic byte, unknown schema
    id, corrupt Avro, or values that break the record's contract."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        #: Short machine-readable reason, used in dead-letter headers.
        self.reason = reason


class SchemaNotFound(SerializationError):
    """The wire header names a schema id the registry does not know."""

    def __init__(self, schema_id: int) -> None:
        super().__init__("unknown_schema_id", f"no schema with id {schema_id} in the registry")
        self.schema_id = schema_id


class SchemaDriftError(ConfigurationError):
    """A record class no longer matches its ``.avsc`` file."""


class SchemaCompatibilityError(StreamrecError):
    """A schema cannot read data written with its previous version."""


class DeliveryError(StreamrecError):
    """The broker did not acknowledge a produced message."""


class BrokerUnavailable(StreamrecError):
    """No broker answered at the configured address within the timeout."""


class PartitionMismatch(ConfigurationError):
    """Topics that must be co-partitioned have different partition counts."""


class PortInUse(ConfigurationError):
    """A port the embedded stack needs is already taken."""


class EmbeddedStackError(StreamrecError):
    """The embedded broker or Postgres could not be started or stopped."""


class RequestTimeout(StreamrecError):
    """No response arrived for a recommendation request within its timeout."""


class RequestExpired(RequestTimeout):
    """The serve worker answered ``EXPIRED``: the request's deadline had passed before it
    could be served, so nothing was computed (a :class:`RequestTimeout`: the answer came
    too late to be of use, which is what a caller handling timeouts already expects)."""

    def __init__(self, message: str, response: RecResponse) -> None:
        super().__init__(message)
        #: The ``EXPIRED`` :class:`~recsys.records.RecResponse` itself.
        self.response = response
