"""Diagnostic (not a speed benchmark): how far the demo's models are from what is knowable.

On the demo world, held-out latest cut-off, prints churn AUC and value Gini of:

* the oracle: the truth given the hidden state, including who has silently dropped out;
* the observable ceiling: the truth given what the business can see plus each customer's true traits
  (``p_purchase_observable``; :class:`clvml.datasets.synthetic.AliveFilter`);
* the rate-unknown ceiling: the same, for an observer who knows every trait except the purchase rate
  and infers it from the history like a model must (``p_purchase_rate_unknown``;
  :class:`clvml.datasets.synthetic.RateMixtureFilter`);
* LightGBM with the demo config;
* the same LightGBM given the true latent traits as four extra features, and given each trait alone.
  The gap between these and LightGBM is the cost of estimating that trait from the history.

Usage: ``python bench/ceiling.py [-c configs/demo.yaml]`` (about 8 minutes for the demo world).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform

import pandas as pd
from sklearn.metrics import roc_auc_score

from clvml.config import load_config
from clvml.data.dataset import load_dataset
from clvml.data.loading import synthetic_cutoffs
from clvml.datasets.synthetic import simulate
from clvml.evaluation.metrics import normalized_gini
from clvml.modeling.training import TrainingSet, fit_models, make_training_set, split_by_cutoff

TRAITS = ["purchase_rate", "base_hazard", "engagement", "spend_level"]


def held_out_scores(ts: TrainingSet, cfg, truth: pd.DataFrame) -> dict[str, float]:
    earlier, held = split_by_cutoff(ts.frame, 1, cfg.labels.horizon_days)
    churn, value = fit_models(ts, cfg, mask=earlier)
    te = ts.frame[held].reset_index(drop=True)
    m = te[["customer_id", "cutoff", "churn", "spend"]].merge(
        truth, on=["customer_id", "cutoff"], how="left", validate="one_to_one")
    y = m["churn"].astype(int)
    X = te[ts.feature_columns]
    return {
        "cutoff": str(m["cutoff"].iloc[0].date()), "rows": len(m),
        "oracle": (roc_auc_score(y, 1 - m["p_purchase"]), normalized_gini(m["spend"], m["expected_spend"])),
        "observable": (roc_auc_score(y, 1 - m["p_purchase_observable"]),
                       normalized_gini(m["spend"], m["expected_spend_observable"])),
        "rate unknown": (roc_auc_score(y, 1 - m["p_purchase_rate_unknown"]),
                         normalized_gini(m["spend"], m["expected_spend_rate_unknown"])),
        "model": (roc_auc_score(y, churn.predict_proba(X)[:, 1]), normalized_gini(m["spend"], value.predict(X))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--config", default="configs/demo.yaml")
    args = ap.parse_args()
    cfg = load_config(args.config)
    syn = cfg.data.synthetic
    cutoffs = synthetic_cutoffs(cfg)
    horizon = dt.timedelta(days=cfg.labels.horizon_days)
    held = max(c for c in cutoffs if c + horizon <= syn.end + dt.timedelta(days=1))  # latest labelled
    world = simulate(syn.n_customers, syn.start, syn.end, cutoffs=cutoffs,
                     horizon_days=cfg.labels.horizon_days, seed=syn.seed, rate_unknown_truth=[held])
    truth = world.truth.assign(cutoff=lambda d: pd.to_datetime(d["cutoff"]))
    ts = make_training_set(load_dataset(frames=world.tables()), cfg)
    r = held_out_scores(ts, cfg, truth)
    assert r["cutoff"] == str(held), (r["cutoff"], held)
    frame, columns = ts.frame, ts.feature_columns
    for name, extra in [("model + true traits", TRAITS), *((f"model + {t}", [t]) for t in TRAITS)]:
        ts.frame = frame.merge(world.traits[["customer_id", *extra]], on="customer_id", how="left",
                               validate="many_to_one")
        ts.feature_columns = [*columns, *extra]
        r[name] = held_out_scores(ts, cfg, truth)["model"]
    oa, og = r["oracle"]
    print(f"{args.config}: held-out cut-off {r['cutoff']}, {r['rows']:,} rows; {dt.date.today()}, "
          f"{platform.machine()}")
    print(f"{'':24} {'churn AUC':>18} {'value Gini':>18}")
    for k in ("oracle", "observable", "rate unknown", "model", "model + true traits",
              *(f"model + {t}" for t in TRAITS)):
        a, g = r[k]
        print(f"{k:24} {a:9.4f} ({a / oa:.3f}x) {g:9.4f} ({g / og:.3f}x)")


if __name__ == "__main__":
    main()
