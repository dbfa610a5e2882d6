"""Scoring on Spark: the packaged model applied to a Spark DataFrame of features, partition by partition.

The features are the same Ibis expression as on DuckDB, run by Spark. Each partition is handed to
``mapInPandas`` as Arrow batches; every batch is scored by :meth:`ModelBundle.predict` exactly as a
chunk of the single-machine job, so the output has the same columns and values. Drift counts are
computed in the same pass (one extra row per partition carries them) and summed on the driver.

What runs where: features and scoring are distributed; BG/NBD features (when the model uses them) are
fitted on the driver and shipped with the task, like the model itself.
"""

from __future__ import annotations

import datetime as dt
import pickle
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from clvml.data.dataset import Dataset
from clvml.features.builder import build_features
from clvml.scoring.bundle import ModelBundle
from clvml.scoring.drift import add_counts

COUNTS = "_clvml_drift_counts"


def _as_features(pdf: pd.DataFrame, schema) -> pd.DataFrame:
    """A pandas batch from Spark typed as the single-machine job types it (categoricals, dates)."""
    from ibis.formats.pandas import PandasData

    df = PandasData.convert_table(pdf, schema)
    df["cutoff"] = pd.to_datetime(df["cutoff"])
    return df


def _scorer(bundle: ModelBundle, schema, btyd: pd.DataFrame | None,
            score_columns: list[str]) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        counts, columns = None, None
        for pdf in batches:
            if pdf.empty:
                continue
            feats = _as_features(pdf, schema)
            if btyd is not None:
                from clvml.modeling.training import merge_btyd

                feats = merge_btyd(feats, btyd)
            scores = bundle.predict(feats)
            if bundle.reference is not None:
                snap = pd.concat([feats[bundle.feature_columns].reset_index(drop=True),
                                  scores[score_columns]], axis=1)
                counts = add_counts(counts, bundle.reference.counts(snap))
            scores[COUNTS] = None
            columns = scores.columns
            yield scores
        if counts is not None:  # one row per partition carries its drift counts, nulls elsewhere
            row = pd.DataFrame({c: [None] for c in columns})
            row[COUNTS] = [pickle.dumps(counts)]
            yield row
    return run


def score_partitions(bundle: ModelBundle, ds: Dataset, as_of: dt.date, folder: Path,
                     score_columns: list[str], progress: Callable[[str], None]
                     ) -> tuple[int, dict[str, Any] | None]:
    """Score every customer on Spark into ``folder/part-NNNN.parquet`` (sorted by customer within each
    file, as the single-machine job); return rows written and the summed drift counts."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    con = ds.con
    spark = con._session
    expr = build_features(ds.tables, [as_of], windows=bundle.windows, families=bundle.families,
                          custom=bundle.custom_names)
    view = f"clvml_score_features_{as_of:%Y%m%d}"
    con.create_view(view, expr, overwrite=True)
    feats = spark.table(view).persist()  # computed once: the sample below and the scoring reuse it
    btyd = None
    if bundle.btyd_features:
        from clvml.modeling.training import btyd_table

        btyd = btyd_table(ds, [as_of], bundle.horizon_days)
    schema = expr.schema()
    fn = _scorer(bundle, schema, btyd, score_columns)
    sample = next(fn(iter([feats.limit(5).toPandas()])), None)
    if sample is None:  # nobody to score
        return 0, None
    arrow = pa.Schema.from_pandas(sample, preserve_index=False)
    arrow = arrow.set(arrow.get_field_index(COUNTS), pa.field(COUNTS, pa.binary()))
    scored = feats.mapInPandas(fn, from_arrow_schema(arrow)).persist()
    try:
        rows_only = scored.filter(F.col(COUNTS).isNull()).drop(COUNTS, "as_of")  # as_of: the hive key
        spark_out = folder / "_spark"
        # a global sort: the part files are ordered ranges, merged in order into one sorted file
        rows_only.orderBy("customer_id").write.parquet(str(spark_out), compression="zstd")
        counts = None
        for r in scored.filter(F.col(COUNTS).isNotNull()).select(COUNTS).collect():
            counts = add_counts(counts, pickle.loads(r[0]))
    finally:
        scored.unpersist()
        feats.unpersist()
        con.drop_view(view, force=True)
    rows = written = 0
    for part in sorted(spark_out.glob("part-*.parquet")):
        n = pq.ParquetFile(part).metadata.num_rows
        if n:
            part.rename(folder / f"part-{written:04d}.parquet")
            rows, written = rows + n, written + 1
    shutil.rmtree(spark_out)  # _SUCCESS and checksum files
    progress(f"Spark scored {rows:,} customers")
    return rows, counts
