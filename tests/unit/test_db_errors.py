"""The one Postgres error policy (recsys.db.error_kind / db_error): refused values are
data (dead-letter the record), outages are transient (retry), the rest are bugs (stop)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from psycopg_pool import PoolTimeout

from recsys.db import db_error, error_kind
from recsys.exceptions import DatabaseError, DatabaseUnavailable, DataRejected


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (errors.CharacterNotInRepertoire("0x00"), "data"),  # 22021: NUL sent in binary
        (errors.UntranslatableCharacter("\\u0000"), "data"),  # 22P05: NUL in jsonb
        (errors.NumericValueOutOfRange("overflow"), "data"),  # 22003
        (errors.InvalidTextRepresentation("int"), "data"),  # 22P02
        (errors.CheckViolation("check"), "data"),  # 23514
        (errors.NotNullViolation("null"), "data"),  # 23502
        # 54000 is an OperationalError in the DB-API mapping: it must not be retried
        (errors.ProgramLimitExceeded("index row size 4112 exceeds maximum 2704"), "data"),
        (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), "data"),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), "data"),
        (psycopg.OperationalError("connection refused"), "transient"),
        (PoolTimeout("couldn't get a connection after 30.00 sec"), "transient"),
        (errors.AdminShutdown("terminating connection"), "transient"),  # 57P01
        (errors.QueryCanceled("statement timeout"), "transient"),  # 57014
        (errors.SerializationFailure("could not serialize"), "transient"),  # 40001
        (errors.DeadlockDetected("deadlock"), "transient"),  # 40P01
        (errors.TooManyConnections("too many"), "transient"),  # 53300
        (errors.LockNotAvailable("lock"), "transient"),  # 55P03
        (errors.UndefinedTable("no such table"), "bug"),  # 42P01
        (errors.SyntaxError("syntax"), "bug"),  # 42601
        (errors.UndefinedColumn("no such column"), "bug"),  # 42703
        (psycopg.ProgrammingError("wrong number of parameters"), "bug"),
        (ValueError("ours"), "bug"),
    ],
)
def test_error_kind(exc: BaseException, kind: str) -> None:
    assert error_kind(exc) == kind


def test_db_error_maps_each_kind_to_one_domain_error() -> None:
    refused = db_error(errors.CheckViolation("violates check"), "item store")
    assert type(refused) is DataRejected and "item store" in str(refused)
    assert "SQLSTATE 23514" in str(refused)
    away = db_error(psycopg.OperationalError("connection refused"), "users")
    assert type(away) is DatabaseUnavailable
    bug = db_error(errors.UndefinedTable("no such table"), "users")
    assert type(bug) is DatabaseError
