"""Database connection settings: URLs with credentials from the environment, masked wherever shown,
and the check that a configured SQL ``query`` only reads.

A URL may name environment variables as ``${NAME}`` (e.g. ``postgres://clvml:${PGPASSWORD}@db/shop``):
the config, its logs, manifests and MLflow params keep the placeholder, and :func:`expand_env` puts
the value in only when connecting. A URL without a password also works with libpq's own variables
(``PGPASSWORD``, ``PGUSER``, ``PGHOST``, ``~/.pgpass``). A password written literally in a URL is
masked (``***``) by :func:`redact_url` everywhere the URL is shown.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

#: ``${NAME}`` placeholders expanded from the environment when connecting
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: ``password=…`` in a URL's query string (libpq and SQLAlchemy-style URLs accept it there)
_QUERY_PASSWORD = re.compile(r"(?i)((?:^|[?&;])(?:password|passwd|pwd)=)[^&;#]*")
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with its password masked (``***``), for logs, manifests, errors and MLflow params.

    A ``${NAME}`` placeholder is kept as written: it names the variable, not the secret.

    Examples
    --------
    >>> redact_url("postgres://me:s3cret@db:5432/shop?sslmode=require&password=x")
    'postgres://me:***@db:5432/shop?sslmode=require&password=***'
    >>> redact_url("postgres://me:${PGPASSWORD}@db/shop")
    'postgres://me:${PGPASSWORD}@db/shop'
    """
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    head, sep, query = rest.partition("?")
    # the last "@" before the query ends the user info (a password may hold "/" or "@" unencoded);
    # file-based databases have none (their path may hold "@")
    at = -1 if backend_of(url) in ("sqlite", "duckdb", "file") else head.rfind("@")
    if at >= 0 and ":" in head[:at]:
        user, password = head[:at].split(":", 1)
        if not _PLACEHOLDER.fullmatch(password):
            head = f"{user}:{MASK}{head[at:]}"

    def mask(m: re.Match) -> str:
        value = m.string[m.end(1):m.end()]
        return m.group(0) if _PLACEHOLDER.fullmatch(value) else m.group(1) + MASK

    return f"{scheme}://{head}{sep}{_QUERY_PASSWORD.sub(mask, query)}"


def expand_env(url: str, where: str) -> str:
    """``url`` with every ``${NAME}`` replaced by the environment variable's value.

    Parameters
    ----------
    url
        The URL as configured.
    where
        The config key holding it, named in the error (e.g. ``data.tables.transactions.url``).

    Raises
    ------
    ValueError
        A named variable is not set (the message names it, never a value).
    """
    missing = sorted({m.group(1) for m in _PLACEHOLDER.finditer(url) if m.group(1) not in os.environ})
    if missing:
        raise ValueError(f"{where} uses {', '.join('${' + n + '}' for n in missing)} but the environment "
                         f"variable{'s are' if len(missing) > 1 else ' is'} not set: export "
                         f"{missing[0]}=… before running (or drop the password from the URL and let "
                         "libpq read PGPASSWORD or ~/.pgpass)")
    return _PLACEHOLDER.sub(lambda m: os.environ[m.group(1)], url)


def secrets_of(url: str) -> list[str]:
    """The secret strings of an expanded ``url`` (its password, URL-decoded and as written), to be
    removed from any driver message by :func:`scrub`."""
    from urllib.parse import unquote

    out: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    if parts.password:
        out += [parts.password, unquote(parts.password)]
    for m in _QUERY_PASSWORD.finditer(parts.query):
        value = m.string[m.end(1):m.end()]
        out += [value, unquote(value)]
    return sorted({s for s in out if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (a driver's error message) without the password of ``url`` and with every URL in it
    redacted."""
    for secret in secrets_of(url):
        if len(secret) >= 6:
            text = text.replace(secret, MASK)
        else:  # a short password: only where it stands alone (not every "b" of a message)
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, text)
    return re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", lambda m: redact_url(m.group(0)), text)


def backend_of(url: str) -> str:
    """The Ibis backend name of a URL's scheme (``postgresql+psycopg://`` -> ``postgres``)."""
    scheme = url.split("://", 1)[0].lower().split("+", 1)[0]
    return {"postgresql": "postgres", "pg": "postgres"}.get(scheme, scheme)


def ibis_url(url: str) -> str:
    """``url`` with the scheme Ibis knows (``postgresql+psycopg://`` -> ``postgres://``)."""
    scheme, rest = url.split("://", 1)
    return f"{backend_of(url)}://{rest}" if scheme.lower() != backend_of(url) else url


#: sqlglot dialect of each Ibis backend whose name differs from it
_DIALECTS = {"postgres": "postgres", "sqlite": "sqlite", "mysql": "mysql", "mssql": "tsql",
             "duckdb": "duckdb", "snowflake": "snowflake", "bigquery": "bigquery", "oracle": "oracle",
             "trino": "trino", "clickhouse": "clickhouse", "databricks": "databricks", "risingwave": "postgres",
             "impala": "hive", "exasol": "exasol", "druid": "druid", "athena": "athena"}


def check_read_only_query(sql: str, backend: str) -> str:
    """Check that ``sql`` is one ``SELECT`` (or ``WITH … SELECT``, or a set operation of selects) that
    modifies nothing; return it without a trailing semicolon.

    Refused: several statements, any DDL/DML (also inside a ``WITH``, as PostgreSQL's
    ``WITH d AS (DELETE … RETURNING *) SELECT …``), ``SELECT … INTO``, locking clauses
    (``FOR UPDATE``) and text the parser cannot read as the database's SQL.

    Raises
    ------
    ValueError
        Saying what was found and what to write instead.
    """
    import sqlglot
    from sqlglot import exp

    dialect = _DIALECTS.get(backend, backend)
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise ValueError("the query is empty; write one SELECT statement")
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except Exception as exc:  # noqa: BLE001 - sqlglot's parse and dialect errors alike
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"the query cannot be read as {dialect} SQL ({first[:300]}); write one plain "
                         "SELECT statement, or create a view in the database and name it with table:") from None
    if len(statements) != 1:
        raise ValueError(f"the query holds {len(statements)} statements; give exactly one SELECT statement")
    root = statements[0]
    if not isinstance(root, exp.Query):
        kind = type(root).__name__.upper()
        raise ValueError(f"the query is not a SELECT but a {kind} statement: only read-only queries (SELECT or "
                         "WITH … SELECT) are allowed as an input table")
    writes = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Command,
              exp.TruncateTable, exp.Into, exp.Lock, exp.Copy, exp.Set, exp.Transaction, exp.Commit,
              exp.Rollback, exp.Grant)
    for node in root.walk():
        if isinstance(node, writes):
            what = node.key.upper()
            raise ValueError(f"the query contains {what} ({node.sql(dialect)[:80]!r}): only read-only queries "
                             "are allowed (no DDL/DML, SELECT … INTO or locking clauses)")
    return text
