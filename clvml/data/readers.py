"""Readers: Parquet, CSV, a DuckDB database file or an in-memory DataFrame -> an Ibis table.

Everything lands on one Ibis connection (the embedded DuckDB backend by default). Column names and
table names from a config are checked to be plain identifiers before they reach the backend.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import ibis
import pandas as pd

from clvml.config import TableSource, _check_identifier
from clvml.errors import DataSourceError

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
    if source.path is None:
        raise DataSourceError(f"table {name!r}: no path given (data.tables.{name}.path)")
    path = Path(source.path)
    if not path.exists():
        raise DataSourceError(
            f"table {name!r}: {path} does not exist; fix data.tables.{name}.path "
            "(relative paths are resolved against the config file's folder)"
        )
    fmt = source.format or _infer_format(path)
    tname = f"_raw_{name}_{next(_counter)}"
    if con.name == "pyspark":
        return _spark_source(con, name, tname, path, fmt)
    try:
        if fmt == "parquet":
            target = str(path / "**" / "*.parquet") if path.is_dir() else str(path)
            return con.read_parquet(target, table_name=tname)
        if fmt == "csv":
            id_col = source.columns.get("customer_id", "customer_id")
            target = str(path / "**" / "*.csv") if path.is_dir() else str(path)
            # ids are read as text: auto-detection would turn '00042' into 42 and merge keys
            return con.read_csv(target, table_name=tname, types={id_col: "VARCHAR"})
        if fmt == "duckdb":
            if not source.table:
                raise DataSourceError(
                    f"table {name!r}: {path} is a DuckDB database; set data.tables.{name}.table"
                )
            alias = f"src_{next(_counter)}"
            con.attach(str(path), alias, read_only=True)
            return con.table(source.table, database=alias)
    except DataSourceError:
        raise
    except Exception as exc:  # the backend's own error, re-worded with what and where
        raise DataSourceError(f"table {name!r}: could not read {path} as {fmt}: {exc}") from None
    raise DataSourceError(f"table {name!r}: unknown format {fmt!r}")


def _spark_frame(con: ibis.BaseBackend, tname: str, df: pd.DataFrame) -> ibis.Table:
    """An in-memory DataFrame as a Spark view, through Arrow: nulls stay nulls (going through pandas,
    Spark would read a missing float as NaN, which is a value)."""
    import pyarrow as pa

    con._session.createDataFrame(pa.Table.from_pandas(df, preserve_index=False)) \
        .createOrReplaceTempView(tname)
    return con.table(tname)


def _spark_source(con: ibis.BaseBackend, name: str, tname: str, path: Path, fmt: str) -> ibis.Table:
    """A Parquet or CSV file or folder read by Spark (a folder is read whole, partitions included)."""
    try:
        if fmt == "parquet":
            return con.read_parquet(str(path), table_name=tname)
        if fmt == "csv":
            # every column as text, ids included ('00042' stays '00042'); validation converts types
            return con.read_csv(str(path), table_name=tname, inferSchema=False, header=True)
    except Exception as exc:
        raise DataSourceError(f"table {name!r}: Spark could not read {path} as {fmt}: {exc}") from None
    raise DataSourceError(f"table {name!r}: format {fmt!r} cannot be read by engine: spark; convert "
                          "it to Parquet (DuckDB database files are read by the duckdb engine only)")
