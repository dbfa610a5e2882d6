"""Input tables from a database that Ibis connects to (PostgreSQL, SQLite, …), pulled into the engine.

A table source with ``url:`` plus ``table:`` or ``query:`` is read here. What runs in the database:
the column projection (only the columns the table's contract reads, so a wide table sends no other
column) and, for ``query:``, the whole query (its joins and filters are the user's pushdown). What is
pulled: every row of that projection, streamed as Arrow record batches of :data:`BATCH_ROWS` rows
(PostgreSQL: a server-side cursor inside one read-only transaction; SQLite reads the result at once)
into a temporary table of the embedded DuckDB. From there the table goes through exactly the same
mapping, validation, counts and features as a file.

The observation window (``data.as_of``) is not pushed down on purpose: events after it must be seen to
be counted and reported (``future_events: error`` refuses them), as for a file.

Credentials: ``${NAME}`` in the URL is expanded only here, when connecting; every message shows the URL
with its password masked, and the password is removed from the driver's own messages.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import os
import re

import ibis

from clvml.config import TableSource
from clvml.config.database import (
    backend_of,
    check_read_only_query,
    expand_env,
    ibis_url,
    redact_url,
    scrub,
)
from clvml.data.validation import table_schema
from clvml.engine import engine_error
from clvml.errors import ClvmlError, ConfigError, DatabaseUnreachableError, DataSourceError, EngineError

#: rows per Arrow record batch pulled from a database (bounds the memory of one batch in Python)
BATCH_ROWS = 100_000
#: seconds PostgreSQL may take to accept the connection (unless the URL or PGCONNECT_TIMEOUT says)
CONNECT_TIMEOUT_S = 30

_counter = itertools.count()

#: driver messages that mean the login was refused (not the server unreachable)
_AUTH = re.compile(r"password authentication failed|authentication failed|no password supplied|"
                   r"role \S+ does not exist|permission denied for database|pg_hba\.conf", re.IGNORECASE)


def describe(name: str, source: TableSource) -> str:
    """The source as shown in logs and messages: URL with its password masked, and table or query."""
    what = f"table {source.table}" if source.table else "query"
    return f"{redact_url(source.url or '')} {what}"


def _first_line(exc: BaseException, url: str) -> str:
    text = scrub(str(exc).strip(), url)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    head = "; ".join(lines[:2]) if lines else type(exc).__name__
    return head if len(head) <= 500 else head[:500] + " …"


def connect_database(url: str, where: str) -> tuple[ibis.BaseBackend, str]:
    """Connect to the database of a configured ``url`` (``${NAME}`` expanded from the environment).

    Parameters
    ----------
    url
        The URL as configured.
    where
        The config key (``data.tables.transactions.url``) and the table it serves, named in errors.

    Returns
    -------
    The Ibis backend and the expanded URL (to scrub the password from later driver messages).

    Raises
    ------
    ConfigError
        A ``${NAME}`` is not set (exit 2).
    DataSourceError
        A SQLite file does not exist, or the URL's scheme is unknown (exit 3).
    DatabaseUnreachableError
        The server cannot be reached or refused the login (exit 11).
    EngineError
        The Ibis backend (driver) for the URL is not installed (exit 8).
    """
    try:
        real = ibis_url(expand_env(url, where))
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    shown = redact_url(url)
    backend = backend_of(real)
    kwargs = {}
    if backend == "sqlite":
        path = real[len("sqlite://"):]
        path = path[1:] if path.startswith("/") and not path.startswith("//") else path
        if not path or not os.path.isfile(path):  # sqlite3 would create an empty database
            raise DataSourceError(f"{where}: the SQLite database {path or '(none)'} does not exist; fix the "
                                  "path in the URL (sqlite:///relative/path.db or sqlite:////absolute/path.db)")
    if backend == "postgres" and "connect_timeout" not in real and "PGCONNECT_TIMEOUT" not in os.environ:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT_S
    try:
        return ibis.connect(real, **kwargs), real
    except ImportError as exc:
        raise EngineError(f"{where}: reading {shown} needs the Ibis {backend} backend and its driver "
                          f"({_first_line(exc, real)}): pip install 'clvml[postgres]' (PostgreSQL and "
                          f"SQLite) or 'ibis-framework[{backend}]'") from None
    except ValueError as exc:
        if "Don't know how to connect" in str(exc):
            raise DataSourceError(f"{where}: Ibis has no backend for the URL scheme of {shown}; use e.g. "
                                  "postgres://user@host:5432/db or sqlite:///file.db") from None
        msg = _first_line(exc, real)
    except Exception as exc:  # noqa: BLE001 - every driver's connection error
        msg = _first_line(exc, real)
    if _AUTH.search(msg):
        hint = ("The server refused the login: check the user in the URL and the password (${NAME} in the "
                "URL, or PGPASSWORD / ~/.pgpass when the URL has none) and the server's pg_hba.conf")
    elif "does not exist" in msg:
        hint = "Check the database name in the URL"
    else:
        hint = ("Check that the server is running and reachable at the URL's host and port (firewall, VPN, "
                "sslmode?); then run again")
    raise DatabaseUnreachableError(f"{where}: cannot connect to {shown}: {msg.rstrip('.?; ')}. {hint}") from None


def _set_read_only(rcon: ibis.BaseBackend) -> None:
    """Make the session read-only where the database can enforce it (defence in depth: the query was
    already checked to be one SELECT)."""
    stmt = {"postgres": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "sqlite": "PRAGMA query_only = ON"}.get(rcon.name)
    if stmt:
        res = rcon.raw_sql(stmt)
        if hasattr(res, "close"):
            res.close()


def _remote_table(rcon: ibis.BaseBackend, name: str, source: TableSource, where: str, real: str) -> ibis.Table:
    shown = redact_url(source.url or "")
    if source.query is not None:
        sql = check_read_only_query(source.query, rcon.name)
        try:
            return rcon.sql(sql)
        except Exception as exc:  # noqa: BLE001 - the database's own error for the query
            raise DataSourceError(f"table {name!r}: the query of data.tables.{name}.query failed in {shown}: "
                                  f"{_first_line(exc, real)}; run it in the database's own client to fix "
                                  "it (column and table names, syntax)") from None
    try:
        return rcon.table(source.table)
    except Exception as exc:  # noqa: BLE001 - not found, or no permission
        try:
            found = sorted(rcon.list_tables())
        except Exception:  # noqa: BLE001
            found = []
        if source.table in found:  # it exists: the error is another one (permissions)
            raise DataSourceError(f"table {name!r}: cannot read table {source.table} in {shown}: "
                                  f"{_first_line(exc, real)}; grant the user SELECT on it") from None
        close = difflib.get_close_matches(source.table, found, n=1)
        listing = ", ".join(found[:20]) + (" …" if len(found) > 20 else "") if found else "none"
        raise DataSourceError(
            f"table {name!r}: no table or view {source.table!r} in {shown} (found: {listing})"
            + (f"; did you mean {close[0]!r}?" if close else "")
            + f"; fix data.tables.{name}.table (a table in another schema: add it to the URL's path, "
            "postgres://…/db/schema, or use query:)") from None


def _projection(name: str, source: TableSource, columns: list[str]) -> list[str] | None:
    """The remote columns the table's contract reads (canonical or mapped names, the columns of an
    ``amount`` expression, the ``product`` column), in the remote order; None when a required or
    mapped column is missing (validation then reports it with the whole header)."""
    schema, extras = table_schema(name, source)
    mapping = {c: source.columns.get(c, c) for c in schema.names} | extras
    if any(mapping[c] not in columns for c in schema.required) or any(
            u not in columns for u in [*source.columns.values(), *extras.values()]):
        return None
    needed = set(mapping.values())
    return [c for c in columns if c in needed]


def read_database(con: ibis.BaseBackend, name: str, source: TableSource, tname: str) -> ibis.Table:
    """Pull one configured database table (or query result) into ``con`` as the temporary table
    ``tname`` and return it (see the module docstring for what runs where).

    Parameters
    ----------
    con
        The engine's backend (DuckDB).
    name
        Canonical table name (``transactions``, …).
    source
        Its config: ``url`` plus ``table`` or ``query``, and the column mapping.
    tname
        Name of the temporary table to create on ``con``.
    """
    where = f"data.tables.{name}.url"
    shown = describe(name, source)
    if con.name != "duckdb":
        raise ConfigError([f"{where}: database inputs are read by engine: duckdb only (engine: {con.name}); "
                           "export the table to Parquet for Spark, or use the duckdb engine"])
    rcon, real = connect_database(source.url or "", f"{where} (table {name!r})")
    try:
        remote = _remote_table(rcon, name, source, where, real)
        keep = _projection(name, source, list(remote.columns))
        expr = remote.limit(0) if keep is None else remote.select(*keep)
        _set_read_only(rcon)
        raw = con.con  # the DuckDB connection under Ibis
        view = f"_pull_{name}_{next(_counter)}"
        try:
            reader = rcon.to_pyarrow_batches(expr, chunk_size=BATCH_ROWS)
            raw.register(view, reader)
            try:
                raw.execute(f'CREATE TEMP TABLE "{tname}" AS SELECT * FROM "{view}"')
            finally:
                with contextlib.suppress(Exception):
                    raw.unregister(view)
        except ClvmlError:
            raise
        except Exception as exc:  # noqa: BLE001 - the database's error while rows were streamed
            err = engine_error(exc, f"table {name!r} ({shown})")
            if isinstance(err, EngineError):  # out of memory: exit 8 with the memory hint
                raise err from None
            raise DataSourceError(f"table {name!r}: reading {shown} failed: {_first_line(exc, real)}; "
                                  "nothing was used. Check the query or table in the database's own client, "
                                  "and that the connection stayed up") from None
    finally:
        with contextlib.suppress(Exception):
            rcon.disconnect()
    return con.table(tname)

