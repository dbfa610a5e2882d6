"""Compute engines: the Ibis backend that reads, validates and builds features.

DuckDB (embedded, the default) runs everything in-process and spills to disk above ``memory_limit``.
Spark runs the very same Ibis expressions on a cluster (or ``local[N]``): only connecting differs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ibis

from clvml.config import SIZE, EngineConfig
from clvml.errors import ClvmlError, DataSourceError, EngineError


def connect(
    *, memory_limit: str | None = None, temp_directory: str | None = None, threads: int | None = None
) -> ibis.BaseBackend:
    """Open the default in-process DuckDB backend with UTC as its session time zone."""
    con = ibis.duckdb.connect()
    con.raw_sql("SET TimeZone = 'UTC'")
    if memory_limit is not None:
        con.raw_sql(f"SET memory_limit = '{_check_size(memory_limit)}'")
    if temp_directory is not None:
        con.raw_sql(f"SET temp_directory = '{_check_path(temp_directory)}'")
    if threads is not None:
        con.raw_sql(f"SET threads = {int(threads)}")
    return con


def _check_size(value: str) -> str:

    if not SIZE.fullmatch(value.strip()):
        raise EngineError(f"memory limit {value!r} must look like '4GB' or '512MB'")
    return value.strip()


def _check_path(value: str) -> str:
    if "'" in value:
        raise EngineError(f"path {value!r} must not contain a quote character")
    return value


#: the oldest Java that Spark 4 runs on
MIN_JAVA = 17


def connect_engine(engine: EngineConfig | str | None = None) -> ibis.BaseBackend:
    """Open the configured backend: DuckDB (default) or Spark.

    Parameters
    ----------
    engine
        The config's ``engine`` section, or just ``"duckdb"`` / ``"spark"``.
    """
    if engine is None or isinstance(engine, str):
        engine = EngineConfig.model_validate(engine or "duckdb")
    if engine.backend == "spark":
        # the session first: it checks pyspark and Java and says what to install (exit 8); touching
        # ibis.pyspark first would import pyspark and fail with a bare ImportError
        session = spark_session(engine)
        try:
            backend = ibis.pyspark
        except ImportError as exc:
            raise EngineError(f"engine: spark: Ibis cannot load its PySpark backend ({exc}); install a "
                              "supported pyspark with pip install 'clvml[spark]'") from None
        return backend.connect(session)
    d = engine.duckdb
    return connect(memory_limit=d.memory_limit, threads=d.threads,
                   temp_directory=None if d.temp_directory is None else str(d.temp_directory))


def java_version(java: str | None = None) -> int | None:
    """Major version of the Java runtime Spark would use (``$JAVA_HOME/bin/java``, else ``java`` on
    the PATH); None when there is none."""
    if java is None:
        home = os.environ.get("JAVA_HOME")
        java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def spark_session(engine: EngineConfig):
    """A SparkSession with the config's master and settings, in UTC (as the DuckDB engine)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineError("engine: spark needs pyspark: pip install 'clvml[spark]'") from None
    version = java_version()
    if version is None or version < MIN_JAVA:
        found = "no Java was found" if version is None else f"found Java {version}"
        raise EngineError(
            f"engine: spark needs Java {MIN_JAVA} or newer and {found}. Install a JDK {MIN_JAVA}+ "
            "(e.g. apt install openjdk-17-jre-headless) and set JAVA_HOME to it")
    sp = engine.spark
    builder = SparkSession.builder.appName(sp.app_name)
    if sp.master:
        builder = builder.master(sp.master)
    conf = {"spark.sql.session.timeZone": "UTC", **sp.conf}
    if (sp.master or "").startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
        # local workers must run this interpreter (the one with clvml installed), not python3 on
        # the PATH; PySpark reads only the environment variable for that
        os.environ["PYSPARK_PYTHON"] = sys.executable
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def backend_name(obj: ibis.BaseBackend | ibis.Table) -> str:
    """``duckdb``, ``pyspark``, … of a backend or of the backend holding a table."""
    con = obj.get_backend() if isinstance(obj, ibis.Table) else obj
    return con.name


#: longest CSV line accepted (DuckDB ``max_line_size``; DuckDB's default is 2 MiB): a free-text field
#: can be nearly this long (3 million characters even at 4 bytes each). The read buffer is the same
#: size, as by default (DuckDB's default buffer is 16 lines of the limit: 256 MiB reserved at this
#: limit, which fails under a small memory_limit). DuckDB's sniffer takes about 1 s per 2 MiB of a
#: long line.
MAX_LINE_BYTES = 16 * 2**20


def reword_read_error(exc: BaseException) -> str:
    """The first lines of a backend's read error, with the CSV line limit said in clvml's terms
    (DuckDB quotes the whole offending line, which can be megabytes long)."""
    text = str(exc)
    m = re.search(r"Maximum line size of \d+ bytes exceeded\. Actual Size:\s*(\d+) bytes", text)
    if m:
        line = re.search(r"CSV Error on Line: (\d+)", text)
        file = re.search(r"^\s*file = (.*)$", text, re.MULTILINE)
        return (f"line {line.group(1) if line else '?'}"
                + (f" of {file.group(1).strip()}" if file else "")
                + f" is {int(m.group(1)):,} bytes long, above the limit of {MAX_LINE_BYTES:,} bytes "
                f"({MAX_LINE_BYTES >> 20} MiB) per CSV line; shorten that field, or convert the file "
                "to Parquet (which has no line limit)")
    lines = text.splitlines()
    head = "\n".join(lines[:4])
    return head if len(head) <= 1000 else head[:1000] + " …"


#: hint of every out-of-memory error
MEMORY_HINT = ("raise engine.duckdb.memory_limit, or set engine.duckdb.temp_directory to a folder on a "
               "disk with free space so DuckDB can spill there (and fewer engine.duckdb.threads need "
               "less memory)")


def engine_error(exc: BaseException, what: str) -> ClvmlError | None:
    """The clvml error for an engine error raised while reading or computing ``what`` (e.g. "table
    'transactions' (parquet data/tx.parquet)"), or None when it is not one the data or the machine
    explains (a binder or internal error is a bug: it keeps its traceback).

    DuckDB reads lazily: a corrupt Parquet page or a bad CSV line surfaces only when the rows are
    computed, long after the file was opened. Out of memory -> :class:`EngineError` (exit 8);
    unreadable data -> :class:`DataSourceError` (exit 3)."""
    try:
        import duckdb
    except ImportError:  # pragma: no cover - DuckDB is a dependency
        return None
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, duckdb.OutOfMemoryException | MemoryError):
        return EngineError(f"{what}: the engine ran out of memory ({first}); {MEMORY_HINT}")
    bugs = (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException,
            duckdb.InternalException, duckdb.NotImplementedException)
    if isinstance(exc, duckdb.Error) and not isinstance(exc, bugs):
        return DataSourceError(f"{what}: the data could not be read: "
                               f"{reword_read_error(exc).rstrip('.')}; "
                               "check or export the file again (a Parquet file that fails here is "
                               "damaged: its footer is readable, a data page is not)")
    return None


@contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Raise :func:`engine_error`'s clvml error for engine errors inside the block."""
    try:
        yield
    except ClvmlError:
        raise
    except Exception as exc:
        err = engine_error(exc, what)
        if err is None:
            raise
        raise err from None


def materialize(con: ibis.BaseBackend, name: str, expr: ibis.Table,
                what: str | None = None) -> ibis.Table:
    """Compute ``expr`` once and keep it for the session under ``name`` (a temporary table on
    DuckDB, a cached temporary view on Spark). Engine errors become clvml errors naming ``what``
    (default: ``name``), see :func:`engine_error`."""
    with engine_errors(what or name):
        if con.name == "pyspark":
            con.create_view(name, expr, overwrite=True)
            con._session.catalog.cacheTable(name)
            return con.table(name)
        return con.create_table(name, expr, temp=True)


def drop_columns(con: ibis.BaseBackend, table: ibis.Table, columns: list[str]) -> ibis.Table:
    """``table``, a DuckDB table made by :func:`materialize`, without ``columns``: DuckDB drops a
    column's storage at once (no copy of the rest). Returns the table as it now is."""
    op = table.op()
    ns = op.namespace
    parts = [p for p in (ns.catalog, ns.database) if p] + [op.name]
    full = ".".join(sql_identifier(p) for p in parts)
    for c in columns:
        con.raw_sql(f"ALTER TABLE {full} DROP COLUMN {sql_identifier(c)}")
    return con.table(op.name, database=tuple(parts[:-1]) or None)


def sql_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (double quotes, an inner one doubled)."""
    return '"' + name.replace('"', '""') + '"'


def release(con: ibis.BaseBackend, name: str) -> None:
    """Free what :func:`materialize` kept under ``name``. On Spark the view stays defined (views
    built on it still need its definition) and only its cached data is dropped."""
    if con.name == "pyspark":
        con._session.catalog.uncacheTable(name)
        return
    con.drop_table(name, force=True)
