"""The root of every error streamrec raises on purpose.

Each package has its own ``exceptions.py`` whose classes derive from
:class:`StreamrecError`, so callers can catch the whole family in one place and
third-party errors are wrapped with ``raise ... from`` at our boundaries.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DataNotFound",
    "DataRejected",
    "DatabaseError",
    "DatabaseUnavailable",
    "InvalidRange",
    "MigrationError",
    "RecordValidationError",
    "StreamrecError",
]


class StreamrecError(Exception):
    """Root of all streamrec errors."""


class ConfigurationError(StreamrecError):
    """A setting is missing, malformed or inconsistent; the message names it."""


class RecordValidationError(StreamrecError):
    """A record decoded fine but its values break the contract (e.g. a RATING without a rating)."""


class DatabaseError(StreamrecError):
    """Postgres answered with an error we cannot recover from by retrying."""


class DatabaseUnavailable(DatabaseError):
    """Postgres cannot be reached right now; the operation may be retried."""


class DataRejected(DatabaseError):
    """Postgres refused the values of one statement (a data error, not an outage).

    A NUL character or a lone surrogate in text, a number out of a column's range, a
    value breaking a constraint, an index row over its size limit: sending the same
    values again fails again. A stream worker dead-letters the record that carries them
    and goes on with the rest of its batch; retrying would stall the partition forever.
    """


class MigrationError(DatabaseError):
    """A migration failed, or an applied migration file was edited afterwards."""


class DataNotFound(StreamrecError):
    """A data set (e.g. MovieLens) is not where the settings say it is."""


class InvalidRange(ConfigurationError):
    """A replay or evaluation range is empty, inverted or names what does not exist."""
