"""Readers: Parquet, CSV, a DuckDB database file, a database table (:mod:`clvml.data.database`) or an
in-memory DataFrame -> an Ibis table.

Everything lands on one Ibis connection (the embedded DuckDB backend by default). Column names and
table names from a config are checked to be plain identifiers before they reach the backend.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from pathlib import Path

import ibis
import pandas as pd

from clvml.config import TableSource, _check_identifier
from clvml.engine import MAX_LINE_BYTES, engine_error, reword_read_error
from clvml.errors import DataSourceError, EngineError

_counter = itertools.count()


def _infer_format(path: Path) -> str:
    suffixes = "".join(path.suffixes).lower()
    if path.is_dir():
        if any(path.rglob("*.parquet")):
            return "parquet"
        if any(path.rglob("*.csv")):
            return "csv"
    for ext, fmt in ((".parquet", "parquet"), (".pq", "parquet"), (".csv", "csv"), (".csv.gz", "csv"),
                     (".duckdb", "duckdb"), (".db", "duckdb")):
        if suffixes.endswith(ext):
            return fmt
    raise DataSourceError(
        f"cannot tell the format of {path}: set format: parquet | csv | duckdb in the table's config"
    )


def read_table(
    con: ibis.BaseBackend,
    name: str,
    source: TableSource | pd.DataFrame | ibis.Table,
) -> ibis.Table:
    """Read one table's raw data (user column names, original types) onto ``con``."""
    _check_identifier(name, "table name")
    if isinstance(source, ibis.Table):
        return source
    if isinstance(source, pd.DataFrame):
        check_header(name, "the in-memory frame", [str(c) for c in source.columns])
        # an all-null object column has no type; give it text type (validation casts it later)
        nulls = [c for c in source.columns if source[c].dtype == object and source[c].isna().all()]
        if nulls:
            source = source.astype({c: "string" for c in nulls})
        for c in source.columns:  # an object column mixing types (ids 1 and "1") cannot be typed
            if source[c].dtype == object:
                kinds = source[c].dropna().map(type)
                if kinds.nunique() > 1:
                    counts = kinds.map(lambda k: k.__name__).value_counts()
                    raise DataSourceError(
                        f"table {name!r} column {c!r} mixes value types "
                        f"({', '.join(f'{k}: {n:,} rows' for k, n in counts.items())}); cast it to one "
                        "type before loading (ids as text: df[col].astype(str) — note that 1 and '1' "
                        "then become the same id)")
        try:
            tname = f"_raw_{name}_{next(_counter)}"
            if con.name == "pyspark":
                return _spark_frame(con, tname, source)
            return con.create_table(tname, source, temp=True)
        except (TypeError, ValueError) as exc:  # pyarrow conversion errors subclass these
            raise DataSourceError(f"table {name!r} cannot be converted to typed columns: {exc}; give "
                                  "each column one type") from None
    if source.url is not None:
        from clvml.data.database import read_database

        return read_database(con, name, source, f"_raw_{name}_{next(_counter)}")
    if source.path is None:
        raise DataSourceError(f"table {name!r}: no path given (data.tables.{name}.path, or url: for a "
                              "database table)")
    path = Path(source.path)
    if not path.exists():
        raise DataSourceError(
            f"table {name!r}: {path} does not exist; fix data.tables.{name}.path "
            "(relative paths are resolved against the config file's folder)"
        )
    fmt = source.format or _infer_format(path)
    tname = f"_raw_{name}_{next(_counter)}"
    if con.name == "pyspark":
        return _spark_source(con, name, tname, path, fmt, source.encoding)
    try:
        if fmt == "parquet":
            target = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
            _check_parquet_headers(name, _files(path, "*.parquet"))
            return con.read_parquet(target, table_name=tname)
        if fmt == "csv":
            target = str(path / "**" / "*.csv") if path.is_dir() else str(path)
            encoding = source.encoding or _bom_encoding(_files(path, "*.csv"))
            _check_csv_headers(con, name, _files(path, "*.csv"), encoding)
            # every column as text, as Spark reads it: ids keep their zeros ('00042' is not 42), and
            # dates are not guessed by the sniffer (which reads 03/04/2024 as April when no day of the
            # first file's sample is above 12); validation parses them, with timestamp_format if set
            return con.read_csv(target, table_name=tname, all_varchar=True, header=True, encoding=encoding,
                                max_line_size=MAX_LINE_BYTES, buffer_size=MAX_LINE_BYTES)
        if fmt == "duckdb":
            if not source.table:
                raise DataSourceError(
                    f"table {name!r}: {path} is a DuckDB database; set data.tables.{name}.table"
                )
            alias = f"src_{next(_counter)}"
            con.attach(str(path), alias, read_only=True)
            return con.table(source.table, database=alias)
    except (DataSourceError, EngineError):
        raise
    except Exception as exc:  # the backend's own error, re-worded with what and where
        _raise_if_out_of_memory(exc, f"table {name!r} ({path})")
        raise DataSourceError(f"table {name!r}: could not read {path} as {fmt}: "
                              f"{_encoding_hint(reword_read_error(exc), name)}") from None
    raise DataSourceError(f"table {name!r}: unknown format {fmt!r}")


def _bom_encoding(files: list[Path]) -> str:
    """utf-16 when the first file starts with a UTF-16 byte-order mark, else utf-8."""
    if files and files[0].is_file():
        with open(files[0], "rb") as fh:
            if fh.read(2) in (b"\xff\xfe", b"\xfe\xff"):
                return "utf-16"
    return "utf-8"


def _encoding_hint(message: str, name: str) -> str:
    """DuckDB's advice on a wrong encoding names its own option; say clvml's key instead."""
    if "not utf-8 encoded" not in message and "Invalid unicode" not in message:
        return message
    message = re.sub(r"\n*Possible Solution:.*", "", message, flags=re.DOTALL)
    return (f"{message}\nset data.tables.{name}.encoding: latin-1 (Windows-1252 and most European "
            "exports) or utf-16 (Excel's 'Unicode text'), or save the file as UTF-8")


def _raise_if_out_of_memory(exc: BaseException, what: str) -> None:
    err = engine_error(exc, what)
    if isinstance(err, EngineError):  # the machine, not the file: exit 8 with the memory hint
        raise err from None


def _files(path: Path, pattern: str) -> list[Path]:
    return sorted(path.rglob(pattern)) if path.is_dir() else [path]


def check_header(name: str, where: str, names: list[str | None]) -> None:
    """Refuse duplicate or blank column names: a second ``amount`` (say, a discount) would otherwise
    be renamed by the reader and the first silently used."""
    problems = []
    blank = [i + 1 for i, c in enumerate(names) if c is None or not str(c).strip()]
    if blank:
        problems.append(f"no name at position(s) {', '.join(map(str, blank))}")
    for col, n in Counter(c for c in names if c is not None and str(c).strip()).items():
        if n > 1:
            pos = [str(i + 1) for i, c in enumerate(names) if c == col]
            problems.append(f"{n} columns named {col!r} (positions {', '.join(pos)})")
    if problems:
        raise DataSourceError(
            f"table {name!r}: {where} has {'; '.join(problems)} (of {len(names)} columns: "
            f"{', '.join(repr(c) for c in names[:20])}{' …' if len(names) > 20 else ''}); give every "
            f"column a unique name in the header, then map the one you mean with "
            f"data.tables.{name}.columns.<canonical>: <your column>")


def _check_csv_headers(con: ibis.BaseBackend, name: str, files: list[Path], encoding: str = "utf-8") -> None:
    """Each CSV file must have a header row of unique, non-blank names (read as written: DuckDB would
    rename a second ``amount`` to ``amount_1`` and call a blank one ``column1``)."""
    if not files:
        raise DataSourceError(f"table {name!r}: no .csv files found")
    raw = getattr(con, "con", None)  # the DuckDB connection under Ibis
    for f in files:
        if f.stat().st_size == 0:
            raise DataSourceError(
                f"table {name!r}: {f} is empty (0 bytes): it has no header row, so none of the "
                "table's columns can be found; remove the file or write the export again")
        if raw is None:
            continue
        try:
            row = raw.execute("SELECT * FROM read_csv(?, header = false, all_varchar = true, encoding = ?, "
                              f"max_line_size = {MAX_LINE_BYTES}, buffer_size = {MAX_LINE_BYTES}) "
                              "LIMIT 1", [str(f), encoding]).fetchone()
        except Exception as exc:
            _raise_if_out_of_memory(exc, f"table {name!r} ({f})")
            raise DataSourceError(f"table {name!r}: could not read {f} as csv: "
                                  f"{_encoding_hint(reword_read_error(exc), name)}") from None
        if row is None:
            raise DataSourceError(f"table {name!r}: {f} has no header row; the first line must "
                                  "name the columns")
        check_header(name, str(f), list(row))


def _check_parquet_headers(name: str, files: list[Path]) -> None:
    import pyarrow.parquet as pq

    for f in files:
        try:
            names = pq.read_schema(f).names
        except Exception:  # not readable here: the reader reports it with its own words
            continue
        check_header(name, str(f), names)


def _spark_frame(con: ibis.BaseBackend, tname: str, df: pd.DataFrame) -> ibis.Table:
    """An in-memory DataFrame as a Spark view, through Arrow: nulls stay nulls (going through pandas,
    Spark would read a missing float as NaN, which is a value)."""
    import pyarrow as pa

    con._session.createDataFrame(pa.Table.from_pandas(df, preserve_index=False)) \
        .createOrReplaceTempView(tname)
    return con.table(tname)


def _spark_source(con: ibis.BaseBackend, name: str, tname: str, path: Path, fmt: str,
                  encoding: str | None = None) -> ibis.Table:
    """A Parquet or CSV file or folder read by Spark (a folder is read whole, partitions included)."""
    try:
        if fmt == "parquet":
            return con.read_parquet(str(path), table_name=tname)
        if fmt == "csv":
            # every column as text, ids included ('00042' stays '00042'); validation converts types
            extra = {"encoding": encoding} if encoding else {}
            return con.read_csv(str(path), table_name=tname, inferSchema=False, header=True, **extra)
    except Exception as exc:
        raise DataSourceError(f"table {name!r}: Spark could not read {path} as {fmt}: {exc}") from None
    raise DataSourceError(f"table {name!r}: format {fmt!r} cannot be read by engine: spark; convert "
                          "it to Parquet (DuckDB database files are read by the duckdb engine only)")
