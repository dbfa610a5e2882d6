"""Write the feature table to Parquet in customer batches, so memory stays bounded at any size.

:func:`~clvml.features.builder.build_features` is one lazy query whose hash aggregations hold one state
per (customer, cut-off); at millions of customers that no longer fits in memory and DuckDB spills
heavily. Every feature depends on one customer's own history only, so the customers can be split into
disjoint batches (by a hash of ``customer_id``) and each batch built and streamed to its own Parquet
file: the result is exactly the same rows, with memory proportional to the batch.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import ibis
import pyarrow.parquet as pq

from clvml.features.builder import DEFAULT_WINDOWS, as_cutoffs, build_features
from clvml.features.registry import FAMILIES
from clvml.io import OutputError, replace_dir

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


def write_features(
    tables: Mapping[str, ibis.Table],
    cutoffs: Iterable[dt.date | str],
    path: str | Path,
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    families: Sequence[str] = FAMILIES,
    batches: int | None = None,
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

    Returns
    -------
    FeatureFiles
        Folder, number of batches, total rows and columns written.
    """
    cuts = as_cutoffs(cutoffs)
    tx = tables["transactions"]
    con = tx.get_backend()
    if batches is None:
        customers = int(tx.customer_id.nunique().to_pyarrow().as_py())
        batches = max(1, math.ceil(customers * len(cuts) / ROWS_PER_BATCH))
    if batches < 1:
        raise ValueError(f"batches must be at least 1, got {batches}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror or exc}; check the path "
                          "exists and is writable") from None
    try:
        rows = columns = 0
        for b in range(batches):
            part = {name: customer_batch(t, b, batches) if "customer_id" in t.columns else t
                    for name, t in tables.items()}
            feats = build_features(part, cuts, windows=windows, families=families)
            out = tmp / f"part-{b:04d}.parquet"
            con.to_parquet(feats.order_by(["cutoff", "customer_id"]), out, compression="zstd")
            meta = pq.ParquetFile(out).metadata
            rows, columns = rows + meta.num_rows, meta.num_columns
        replace_dir(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"writing features to {path} failed: {exc.strerror or exc}; the previous "
                          "output (if any) is unchanged") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FeatureFiles(path, batches, rows, columns)
