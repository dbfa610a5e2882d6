"""Write the feature table to Parquet in customer batches, so memory stays bounded at any size.

:func:`~clvml.features.builder.build_features` is one lazy query whose hash aggregations hold one state
per (customer, cut-off); at millions of customers that no longer fits in memory and DuckDB spills
heavily. Every feature depends on one customer's own history only, so the customers can be split into
disjoint batches (on DuckDB ranges of ``customer_id``, elsewhere a hash of it) and each batch built and
streamed to its own Parquet file: the result is exactly the same rows, with memory proportional to the
batch.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clvml.features.builder import (
    DEFAULT_WINDOWS,
    RoundedWholeWarning,
    arrow_to_pandas,
    as_cutoffs,
    build_features,
    count_rounded,
    to_arrow,
    to_pandas,
    warn_rounded,
)
from clvml.features.query import resolve_plan
from clvml.features.registry import FAMILIES, WHOLE_EXACT
from clvml.io import remove_dead_staging, replace_dir, staging_dir

#: (customer, cut-off) rows per batch by default: keeps DuckDB's aggregation state near 1-2 GiB
ROWS_PER_BATCH = 1_500_000


@dataclass(frozen=True)
class FeatureFiles:
    """What :func:`write_features` wrote: a folder of ``part-NNNN.parquet`` files."""

    path: Path
    batches: int
    rows: int
    columns: int


def customer_batch(table: ibis.Table, batch: int, batches: int) -> ibis.Table:
    """Rows of ``table`` whose customer falls in ``batch`` of ``batches`` (by a stable hash)."""
    h = table.customer_id.hash() % batches
    return table.filter(ibis.ifelse(h < 0, h + batches, h) == batch)


def _sql_string(value: str) -> str:
    """A SQL string literal (quotes doubled): customer ids are data, never SQL."""
    import sqlglot.expressions as sge

    return sge.Literal.string(value).sql("duckdb")


def _range_bounds(tx: ibis.Table, batches: int) -> list[str | None]:
    """Customer-id bounds (None = open end) splitting the transaction customers into ``batches``
    batches of (nearly) equal size, in DuckDB's string order; batch b is [bounds[b], bounds[b + 1])."""
    if batches == 1:
        return [None, None]
    ids = tx.select(customer_id=tx.customer_id.cast("string")).distinct().order_by("customer_id")
    ids = ids.to_pyarrow()["customer_id"]
    cut = [ids[int(round(len(ids) * k / batches))].as_py() for k in range(1, batches)] if len(ids) else []
    return [None, *sorted(set(cut)), None]  # fewer customers than batches: the last ones are empty


class FeatureBatches:
    """The features of one customer batch at a time (every batch gives exactly its customers' rows).

    On DuckDB the feature query reads temporary views that are redefined for each batch (a range of
    customer ids). With the cross-join plan it is compiled once (compiling costs ~2 s, running a small
    batch ~0.1 s); the incremental plan (:func:`~clvml.features.query.resolve_plan`) computes the
    transaction aggregates of the batch's rows at once, so its expression is built again for every batch.
    Other backends build and compile the expression per batch. Use as a context manager (the views are
    dropped on exit). ``ordered=False`` leaves out the final sort by cut-off and customer (for a caller
    that orders the rows itself, as the scoring job does: sorting every feature column of a batch is
    ~5 % of its query).
    """

    def __init__(self, tables: Mapping[str, ibis.Table], cutoffs: Iterable[dt.date | str], *,
                 windows: Sequence[int] = DEFAULT_WINDOWS, families: Sequence[str] = FAMILIES,
                 batches: int = 1, custom: Sequence[str] | None = None, plan: str | None = None,
                 ordered: bool = True):
        if batches < 1:
            raise ValueError(f"batches must be at least 1, got {batches}")
        self.tables, self.batches = dict(tables), batches
        self.cutoffs, self.windows, self.families = as_cutoffs(cutoffs), windows, families
        self.custom = None if custom is None else list(custom)
        self.plan = plan
        self.ordered = ordered
        self.con = self.tables["transactions"].get_backend()
        # the incremental plan's expression holds the batch's aggregates: built again for each batch
        self._eager = resolve_plan(plan, self.con.name, len(self.cutoffs)) == "incremental"
        self._built = 0
        self._views: dict[str, str] = {}
        self._sql: str | None = None
        self.expr = None
        if self.con.name == "duckdb":
            uid = uuid.uuid4().hex[:10]
            self._bounds = _range_bounds(self.tables["transactions"], batches)
            self._base = {n: self.con.compile(t) for n, t in self.tables.items()}
            self._views = {n: f"_clvml_batch_{n}_{uid}" for n in self.tables}
            self._define(0)
            self.expr = self._on_views()
            self._schema = self.expr.schema()  # every batch's (the incremental plan rebuilds expr per batch)

    def _on_views(self) -> ibis.Table:
        views = {n: self.con.table(v) for n, v in self._views.items()}
        return self._order(build_features(views, self.cutoffs, windows=self.windows, families=self.families,
                                          custom=self.custom, plan=self.plan))

    def _order(self, expr: ibis.Table) -> ibis.Table:
        # the incremental plan's table is in memory: sorted there by to_arrow, not by an engine query
        return expr.order_by(["cutoff", "customer_id"]) if self.ordered and not self._eager else expr

    def _define(self, b: int) -> None:
        # a batch is a range of customer ids: the clean tables are sorted by customer, so DuckDB's
        # min/max statistics skip the row groups of other batches instead of hashing every row
        if b + 1 >= len(self._bounds):
            cond = "FALSE"
        else:
            lo, hi = self._bounds[b], self._bounds[b + 1]
            cond = " AND ".join([f"customer_id >= {_sql_string(lo)}"] * (lo is not None)
                                + [f"customer_id < {_sql_string(hi)}"] * (hi is not None)) or "TRUE"
        for n, view in self._views.items():  # identifiers are generated here, never user text
            self.con.raw_sql(f'CREATE OR REPLACE TEMP VIEW "{view}" AS SELECT * FROM ({self._base[n]}) '
                             f"AS base WHERE {cond}")

    def expression(self, b: int) -> ibis.Table:
        """The batch's feature expression (on DuckDB: after redefining the views for it; with the incremental
        plan not yet ordered: :meth:`arrow`, :meth:`pandas` and :meth:`to_parquet` order it)."""
        if self.expr is not None:
            self._define(b)
            if self._eager and b != self._built:
                self.expr, self._built = None, b  # the previous batch's aggregates are released first
                self.expr = self._on_views()
            return self.expr
        part = {n: customer_batch(t, b, self.batches) for n, t in self.tables.items()}
        return self._order(build_features(part, self.cutoffs, windows=self.windows, families=self.families,
                                          custom=self.custom, plan=self.plan))

    def arrow(self, b: int) -> pa.Table:
        """Features of batch ``b`` as an Arrow table (ordered by cut-off and customer)."""
        return self._run(self.expression(b))

    def _compiled(self, expr: ibis.Table) -> str | None:
        """The SQL to run directly, or None to go through Ibis (other backends; the incremental plan,
        whose in-memory tables Ibis registers when it runs them). Compiled once, at the first batch,
        after registering the cut-off table as running the expression would (~0.7 s per compilation at
        153 features: every batch runs the same SQL on its own views)."""
        if self.expr is None or self._eager:
            return None
        if self._sql is None:
            self.con._run_pre_execute_hooks(expr)  # registers the in-memory cut-off table
            self._sql = self.con.compile(expr)
        return self._sql

    def _run(self, expr: ibis.Table) -> pa.Table:
        if self._eager:
            return to_arrow(expr, ordered=self.ordered)
        sql = self._compiled(expr)
        if sql is None:
            out = expr.to_pyarrow()
            warn_rounded(out)
            return out
        res = self.con.raw_sql(sql)
        out = res.to_arrow_table() if hasattr(res, "to_arrow_table") else res.fetch_arrow_table()
        out = out.cast(expr.schema().to_pyarrow())
        warn_rounded(out)
        return out

    def to_parquet(self, b: int, out: Path) -> None:
        """Write batch ``b`` to the Parquet file ``out`` (zstd)."""
        expr = self.expression(b)
        sql = self._compiled(expr)
        if sql is None:
            if self._eager:  # the cross join's file: DuckDB's DATE + INTERVAL is a TIMESTAMP, so is its cutoff
                expr = expr.mutate(cutoff=expr.cutoff.cast("timestamp"))
                expr = expr.order_by(["cutoff", "customer_id"]) if self.ordered else expr
            self.con.to_parquet(expr, out, compression="zstd")
        else:
            self.con.raw_sql(f"COPY ({sql}) TO {_sql_string(str(out))} "
                             "(FORMAT 'parquet', COMPRESSION 'zstd')")

    def pandas(self, b: int) -> pd.DataFrame:
        """Features of batch ``b`` as :func:`~clvml.features.builder.to_pandas` returns them."""
        return self.frame(self.fetch(b))

    def fetch(self, b: int) -> pa.Table | pd.DataFrame:
        """The engine's part of :meth:`pandas`: batch ``b`` computed, as Arrow on DuckDB (a DataFrame
        elsewhere); :meth:`frame` finishes it, e.g. in another thread."""
        expr = self.expression(b)
        return to_pandas(expr) if self.expr is None else self._run(expr)

    def frame(self, got: pa.Table | pd.DataFrame) -> pd.DataFrame:
        """:meth:`fetch`'s result as :meth:`pandas` returns it."""
        if isinstance(got, pd.DataFrame):
            return got
        return arrow_to_pandas(got, self._schema)

    def close(self) -> None:
        for view in self._views.values():
            self.con.raw_sql(f'DROP VIEW IF EXISTS "{view}"')
        self._views = {}

    def __enter__(self) -> FeatureBatches:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_features(
    tables: Mapping[str, ibis.Table],
    cutoffs: Iterable[dt.date | str],
    path: str | Path,
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    families: Sequence[str] = FAMILIES,
    batches: int | None = None,
    plan: str | None = None,
) -> FeatureFiles:
    """Build the features of :func:`~clvml.features.builder.build_features` and write them to the
    folder ``path`` as one Parquet file per customer batch.

    Parameters
    ----------
    tables, cutoffs, windows, families
        As for :func:`~clvml.features.builder.build_features`.
    path
        Output folder. It is replaced atomically: the parts are written to a temporary folder beside
        it, which is renamed into place only when every batch succeeded, so a failed run leaves the
        previous output intact.
    batches
        Number of customer batches; default: enough for ~1.5M (customer, cut-off) rows each.
    plan
        As for :func:`~clvml.features.builder.build_features`.

    Returns
    -------
    FeatureFiles
        Folder, number of batches, total rows and columns written.
    """
    cuts = as_cutoffs(cutoffs)
    tx = tables["transactions"]
    if batches is None:
        customers = int(tx.customer_id.nunique().to_pyarrow().as_py())
        batches = max(1, math.ceil(customers * len(cuts) / ROWS_PER_BATCH))
    if batches < 1:
        raise ValueError(f"batches must be at least 1, got {batches}")
    path = Path(path)
    rows = columns = 0
    remove_dead_staging(path.parent, f".{path.name}.")  # killed runs' folders (never a live run's)
    rounded: dict[str, int] = {}
    with warnings.catch_warnings():  # whole numbers past 2**24: counted once for all parts, from the files
        warnings.simplefilter("ignore", RoundedWholeWarning)
        with staging_dir(path.parent, f".{path.name}.", f"features to {path}") as tmp, \
                FeatureBatches(tables, cuts, windows=windows, families=families, batches=batches,
                               plan=plan) as fb:
            for b in range(batches):
                out = tmp / f"part-{b:04d}.parquet"
                fb.to_parquet(b, out)
                part = pq.ParquetFile(out)
                rows, columns = rows + part.metadata.num_rows, part.metadata.num_columns
                for name, n in _rounded_in_file(part).items():
                    rounded[name] = rounded.get(name, 0) + n
            replace_dir(tmp, path)
    warn_rounded(None, rounded)
    return FeatureFiles(path, batches, rows, columns)


def _rounded_in_file(f: pq.ParquetFile) -> dict[str, int]:
    """:func:`~clvml.features.builder.count_rounded` of a written part, from its row groups' statistics
    (a float32 column is read only when a row group's minimum or maximum is at or past 2**24)."""
    suspect = []
    for i, field in enumerate(f.schema_arrow):
        if not pa.types.is_float32(field.type):
            continue
        for g in range(f.metadata.num_row_groups):
            st = f.metadata.row_group(g).column(i).statistics
            if st is None or not st.has_min_max or st.min <= -WHOLE_EXACT or st.max >= WHOLE_EXACT:
                suspect.append(field.name)
                break
    return count_rounded(f.read(columns=suspect)) if suspect else {}
