"""The transaction family's category and channel mixes alone: the incremental plan's (NumPy,
``clvml.features.incremental.mix_totals``) against the cross join's, bit for bit, with their times.

Each plan's ``transactions._mix(...)`` is executed to Arrow on ``con.read_parquet`` of the cached world's
transactions (as ``bench/fair_features.py``'s ``clvml-raw``/``clvml-inc`` read it) for the last N month
starts; the incremental rows where the customer has a purchase must be exactly the cross join's rows (same
keys, counts and float64 bits), the others null. Times are wall and CPU (user + sys of this process, all
threads) per call, the first call of each plan included; the process's peak RSS at the end.
``--plans incremental`` times the incremental plan alone (no comparison), e.g. at 10M transactions.

    python bench/mixes.py --transactions 1000000 --cutoffs 6 24
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MIXES = (("category", "tx_categories_all", "tx_category_hhi", "hhi"),
         ("channel", "tx_channels_all", "tx_main_channel_share", "share"))


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transactions", type=int, default=1_000_000)
    ap.add_argument("--cutoffs", type=int, nargs="+", default=[6, 24])
    ap.add_argument("--out", type=Path, default=HERE / "out", help="world cache")
    ap.add_argument("--plans", nargs="+", default=["incremental", "cross_join"], choices=["incremental", "cross_join"])
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from fair_features import monthly_cutoffs
    from world import build_world

    from clvml.engine import connect
    from clvml.features import transactions
    from clvml.features.builder import as_cutoffs, cutoff_table

    world = build_world(args.transactions, args.out)
    tx = connect().read_parquet(str(world / "transactions" / "*.parquet"))
    print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, load {os.getloadavg()[0]:.2f}")
    print("| cut-offs | mix | rows | plan | wall (s) | CPU-s | float64 bits differing |")
    print("|---|---|---|---|---|---|---|")
    for k in args.cutoffs:
        cuts = cutoff_table(as_cutoffs(monthly_cutoffs(k)))
        for column, count, share, kind in MIXES:
            got, times = {}, {}
            for plan in args.plans:
                t0, c0 = time.perf_counter(), _cpu()
                got[plan] = transactions._mix(tx, cuts, column, count, share, kind, plan).to_pyarrow()
                times[plan] = (time.perf_counter() - t0, _cpu() - c0)
            differ = ""
            if len(got) == 2:
                differ = _differing(got, column, count, share, k)
            for plan, (wall, cpu) in times.items():
                print(f"| {k} | {column} | {got[plan].num_rows:,} | {plan} | {wall:.2f} | {cpu:.2f} | "
                      f"{differ if plan == 'incremental' else ''} |", flush=True)
            del got
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GiB")


def _differing(got: dict, column: str, count: str, share: str, k: int) -> int:
    """Float64 bit patterns of ``share`` differing between the plans (rows, counts and nulls must agree)."""
    inc = got["incremental"].to_pandas()
    inc = inc[inc[count].notna()].sort_values(["customer_id", "cutoff_day"]).reset_index(drop=True)
    cj = got["cross_join"].to_pandas().sort_values(["customer_id", "cutoff_day"]).reset_index(drop=True)
    if not (len(inc) == len(cj) and (inc.customer_id.to_numpy() == cj.customer_id.to_numpy()).all()
            and (inc.cutoff_day.to_numpy() == cj.cutoff_day.to_numpy()).all()
            and (inc[count].astype("int64").to_numpy() == cj[count].to_numpy()).all()):
        raise SystemExit(f"{column} at {k} cut-offs: the plans disagree on the rows or the counts")
    a, b = inc[share].to_numpy(), cj[share].to_numpy()
    if not (np.isnan(a) == np.isnan(b)).all():
        raise SystemExit(f"{column} at {k} cut-offs: the plans disagree on the nulls")
    return int(np.count_nonzero(a[~np.isnan(a)].view(np.int64) != b[~np.isnan(b)].view(np.int64)))


if __name__ == "__main__":
    main()
