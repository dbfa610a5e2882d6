"""Retention-incentive experiments: outcomes of an A/B test, effects with confidence intervals (overall
and per segment), and sample-size / power planning.

An assignment table has one row per customer and campaign: ``customer_id``, ``group`` (two labels, one
of them the control label), ``assigned_ts`` (timestamp or date; a date means midnight) and optionally
``campaign_id`` and any segment columns. The outcome window of a customer is
``[assigned_ts, assigned_ts + window_days)``; outcomes come from the transaction history:

* ``repurchased``: at least one order (positive amount) in the window;
* ``purchases``: distinct purchase days in the window;
* ``spend``: gross order value in the window (refunds are not subtracted: a refund belongs to the
  order it reverses, often from before the window).

Effects are treatment minus control. The repurchase-rate interval is Newcombe's hybrid score interval
(method 10; good coverage for small groups and rates near 0 or 1) with a pooled two-proportion z-test;
means use Welch's t interval and test. Per-segment p-values are also given Holm-adjusted within each
metric, since a table of segments invites picking the best one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import ibis
import numpy as np
import pandas as pd
from scipy import stats

from clvml.data.validation import Problem, ValidationReport
from clvml.engine import materialize
from clvml.errors import ConfigError, DataValidationError

METRICS = ("repurchased", "purchases", "spend")
OUTCOME_COLUMNS = ["customer_id", "campaign_id", "group", "assigned_ts", "window_end", *METRICS]


def _problem(column: str | None, check: str, n: int, message: str, fix: str,
             examples: list[dict] | None = None) -> Problem:
    return Problem("assignments", column, check, n, message, fix, examples=examples or [])


def validate_assignments(assignments: pd.DataFrame, control: str = "control") -> pd.DataFrame:
    """Check an assignment table and return it canonical (``campaign_id`` filled, ``assigned_ts`` as
    datetime64[us]); raise :class:`DataValidationError` listing every problem."""
    report = ValidationReport()
    problems = report.problems
    missing = [c for c in ("customer_id", "group", "assigned_ts") if c not in assignments.columns]
    if missing:
        problems.append(_problem(None, "missing_columns", len(assignments),
                                 f"missing column(s) {missing}; have {list(assignments.columns)}",
                                 "rename the columns to customer_id, group, assigned_ts"))
        raise DataValidationError(report)
    a = assignments.copy()
    if "campaign_id" not in a.columns:
        a["campaign_id"] = "campaign"
    report.rows_in["assignments"] = len(a)
    for col in ("customer_id", "group", "assigned_ts"):
        bad = a[col].isna()
        if bad.any():
            problems.append(_problem(col, "null", int(bad.sum()), f"{col} is empty",
                                     "fill or remove these rows",
                                     a.loc[bad].head(3)[["customer_id", "group"]].to_dict("records")))
    ts = pd.to_datetime(a["assigned_ts"], errors="coerce")
    bad = ts.isna() & a["assigned_ts"].notna()
    if bad.any():
        problems.append(_problem("assigned_ts", "bad_timestamp", int(bad.sum()),
                                 "assigned_ts is not a date/timestamp", "use YYYY-MM-DD[ HH:MM:SS]",
                                 a.loc[bad].head(3)[["customer_id", "assigned_ts"]].to_dict("records")))
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    a["assigned_ts"] = ts.astype("datetime64[us]")
    a["customer_id"] = a["customer_id"].astype(str).where(a["customer_id"].notna())
    groups = sorted(a["group"].dropna().astype(str).unique())
    if control not in groups or len(groups) != 2:
        problems.append(_problem("group", "groups", len(a),
                                 f"expected exactly two groups including the control {control!r}, "
                                 f"found {groups}",
                                 "label the control group (or pass its label as control=...) and "
                                 "evaluate one treatment arm at a time"))
    a["group"] = a["group"].astype(str)
    dup = a.duplicated(["campaign_id", "customer_id"], keep=False) & a["customer_id"].notna()
    if dup.any():
        problems.append(_problem("customer_id", "duplicate_key", int(dup.sum()),
                                 "customers assigned more than once in the same campaign",
                                 "keep one assignment per customer and campaign_id",
                                 a.loc[dup].head(3)[["campaign_id", "customer_id", "group"]]
                                 .to_dict("records")))
    if not report.ok:
        raise DataValidationError(report)
    return a.reset_index(drop=True)


@dataclass
class Outcomes:
    """Per-customer experiment outcomes plus the count of assignments left out and why."""

    table: pd.DataFrame
    excluded: dict[str, int]

    def summary(self) -> dict:
        t = self.table
        return {"customers": len(t), "by_group": t["group"].value_counts().sort_index().to_dict(),
                "excluded": self.excluded}


def experiment_outcomes(assignments: pd.DataFrame, transactions: ibis.Table, *, window_days: int,
                        control: str = "control", data_end: dt.datetime | None = None) -> Outcomes:
    """Outcomes of every assigned customer over ``[assigned_ts, assigned_ts + window_days)``.

    Parameters
    ----------
    assignments
        See the module docstring; validated with :func:`validate_assignments`.
    transactions
        The canonical transactions table (``Dataset["transactions"]``).
    window_days
        Outcome window length.
    data_end
        Time up to which the history is complete (default: the latest transaction). Assignments whose
        window ends after it are excluded and counted (``excluded['window_incomplete']``): their
        outcomes are not known yet.
    """
    if window_days <= 0:
        raise ConfigError([f"window_days must be positive, got {window_days}"])
    a = validate_assignments(assignments, control)
    a["window_end"] = a["assigned_ts"] + pd.Timedelta(days=window_days)
    if data_end is None:
        data_end = transactions.ts.max().to_pyarrow().as_py()
    complete = a["window_end"] <= pd.Timestamp(data_end) + pd.Timedelta(microseconds=1)
    excluded = {"window_incomplete": int((~complete).sum())}
    a = a.loc[complete].reset_index(drop=True)
    con = transactions._find_backend()
    keys = ibis.memtable(a[["customer_id", "campaign_id", "assigned_ts", "window_end"]])
    keys = materialize(con, f"clvml_assign_{id(a)}", keys)
    tx = transactions.filter(transactions.amount > 0)
    j = keys.inner_join(tx, [keys.customer_id == tx.customer_id, tx.ts >= keys.assigned_ts,
                             tx.ts < keys.window_end])
    agg = j.group_by(["customer_id", "campaign_id"]).aggregate(
        purchases=j.ts.date().nunique(), spend=j.amount.sum().cast("float64"))
    got = agg.to_pandas()
    con.drop_table(keys.get_name(), force=True)
    out = a.merge(got, on=["customer_id", "campaign_id"], how="left")
    out["purchases"] = out["purchases"].fillna(0).astype("int64")
    out["spend"] = out["spend"].fillna(0.0)
    out["repurchased"] = (out["purchases"] > 0).astype("int64")
    extra = [c for c in a.columns if c not in OUTCOME_COLUMNS]
    out = out[OUTCOME_COLUMNS + extra].sort_values(["campaign_id", "customer_id"], kind="stable")
    return Outcomes(out.reset_index(drop=True), excluded)


def newcombe_interval(x1: int, n1: int, x0: int, n0: int, alpha: float = 0.05) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 − p0 (method 10 of Newcombe 1998)."""
    z = stats.norm.ppf(1 - alpha / 2)

    def wilson(x: int, n: int) -> tuple[float, float]:
        p = x / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return centre - half, centre + half

    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson(x1, n1)
    l0, u0 = wilson(x0, n0)
    d = p1 - p0
    return (d - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2),
            d + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2))


def _rate_row(y1: np.ndarray, y0: np.ndarray, alpha: float) -> dict:
    n1, n0 = y1.size, y0.size
    x1, x0 = int(y1.sum()), int(y0.sum())
    lo, hi = newcombe_interval(x1, n1, x0, n0, alpha)
    pooled = (x1 + x0) / (n1 + n0)
    se0 = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    diff = x1 / n1 - x0 / n0
    p = 1.0 if se0 == 0 else float(2 * stats.norm.sf(abs(diff) / se0))
    return {"mean_treatment": x1 / n1, "mean_control": x0 / n0, "effect": diff, "ci_low": lo,
            "ci_high": hi, "p_value": p}


def _mean_row(y1: np.ndarray, y0: np.ndarray, alpha: float) -> dict:
    n1, n0 = y1.size, y0.size
    m1, m0 = float(y1.mean()), float(y0.mean())
    v1, v0 = y1.var(ddof=1) / n1, y0.var(ddof=1) / n0
    se = np.sqrt(v1 + v0)
    diff = m1 - m0
    if se == 0:
        return {"mean_treatment": m1, "mean_control": m0, "effect": diff, "ci_low": diff,
                "ci_high": diff, "p_value": 1.0 if diff == 0 else 0.0}
    df = (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1))
    t = stats.t.ppf(1 - alpha / 2, df)
    return {"mean_treatment": m1, "mean_control": m0, "effect": diff, "ci_low": diff - t * se,
            "ci_high": diff + t * se, "p_value": float(2 * stats.t.sf(abs(diff) / se, df))}


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p, kind="stable")
    m = p.size
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def evaluate_experiment(outcomes: Outcomes | pd.DataFrame, *, by: str | list[str] | None = None,
                        control: str = "control", alpha: float = 0.05, min_group: int = 30
                        ) -> pd.DataFrame:
    """Treatment effects on repurchase rate, purchases and spend, overall and per segment.

    Parameters
    ----------
    outcomes
        From :func:`experiment_outcomes` (segment columns may be added to its table).
    by
        Segment column(s); each segment gets its own rows after the overall ones (``segment`` = "all").
    min_group
        Segments with fewer customers than this in either arm get no interval (``note`` says why).

    Returns
    -------
    pandas.DataFrame
        One row per campaign, segment and metric: ``n_treatment, n_control, mean_treatment,
        mean_control, effect, ci_low, ci_high, relative_lift, p_value, p_value_holm, note``.
    """
    t = outcomes.table if isinstance(outcomes, Outcomes) else outcomes
    by = [by] if isinstance(by, str) else list(by or [])
    missing = [c for c in by if c not in t.columns]
    if missing:
        raise ConfigError([f"segment column(s) {missing} not in the outcomes; have {list(t.columns)}"])
    if not 0 < alpha < 1:
        raise ConfigError([f"alpha must be in (0, 1), got {alpha}"])
    rows = []
    for camp, tc in t.groupby("campaign_id", sort=True):
        groups = sorted(tc["group"].unique())
        treat = [g for g in groups if g != control]
        if len(treat) != 1:
            raise ConfigError([f"campaign {camp!r}: expected one treatment group besides {control!r}, "
                               f"found {groups}"])
        parts = [("all", "all", tc)]
        for col in by:
            for val, seg in tc.groupby(col, sort=True, dropna=False):
                parts.append((col, str(val), seg))
        for seg_col, seg_val, seg in parts:
            is_t = seg["group"].to_numpy() == treat[0]
            for metric in METRICS:
                y = seg[metric].to_numpy(dtype=float)
                y1, y0 = y[is_t], y[~is_t]
                row = {"campaign_id": camp, "segment_by": seg_col, "segment": seg_val,
                       "metric": metric, "n_treatment": y1.size, "n_control": y0.size}
                if min(y1.size, y0.size) < max(min_group, 2):
                    row.update(mean_treatment=y1.mean() if y1.size else np.nan,
                               mean_control=y0.mean() if y0.size else np.nan, effect=np.nan,
                               ci_low=np.nan, ci_high=np.nan, p_value=np.nan,
                               note=f"fewer than {min_group} customers in an arm")
                else:
                    stat = _rate_row if metric == "repurchased" else _mean_row
                    row.update(stat(y1, y0, alpha), note="")
                rows.append(row)
    res = pd.DataFrame(rows)
    res["relative_lift"] = np.where(res["mean_control"] > 0,
                                    res["effect"] / res["mean_control"].where(res["mean_control"] > 0),
                                    np.nan)
    res["p_value_holm"] = res["p_value"]
    seg_rows = res["segment_by"] != "all"
    for _, idx in res[seg_rows & res["p_value"].notna()].groupby(
            ["campaign_id", "segment_by", "metric"]).groups.items():
        res.loc[idx, "p_value_holm"] = _holm(res.loc[idx, "p_value"].to_numpy())
    cols = ["campaign_id", "segment_by", "segment", "metric", "n_treatment", "n_control",
            "mean_treatment", "mean_control", "effect", "ci_low", "ci_high", "relative_lift", "p_value",
            "p_value_holm", "note"]
    return res[cols]


@dataclass(frozen=True)
class PowerPlan:
    """Sample sizes for a two-arm test (``n_control`` / ``n_treatment`` per arm)."""

    metric: str
    baseline: float
    effect: float
    alpha: float
    power: float
    ratio: float
    n_control: int
    n_treatment: int

    @property
    def total(self) -> int:
        return self.n_control + self.n_treatment


def _z(alpha: float, power: float) -> tuple[float, float]:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ConfigError([f"alpha and power must be in (0, 1), got alpha={alpha}, power={power}"])
    return stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)


def sample_size(*, baseline: float, effect: float, metric: str = "rate", sd: float | None = None,
                alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0,
                relative: bool = False) -> PowerPlan:
    """Customers needed per arm to detect ``effect`` with a two-sided test.

    Parameters
    ----------
    baseline
        Control repurchase rate (``metric="rate"``) or control mean (``metric="mean"``).
    effect
        Smallest effect worth detecting, absolute (or relative to ``baseline`` with ``relative``).
    sd
        Standard deviation of the outcome (``metric="mean"``); per-customer spend is skewed, so use the
        observed one (:func:`baseline_from_history`).
    ratio
        Treatment customers per control customer.

    Notes
    -----
    Rates use the unpooled-alternative formula ``n0 = (z_a·sqrt(p̄q̄(1+1/k)) +
    z_b·sqrt(p0q0 + p1q1/k))² / δ²`` (Fleiss); means use ``n0 = (z_a + z_b)² σ² (1 + 1/k) / δ²``.
    """
    za, zb = _z(alpha, power)
    if ratio <= 0:
        raise ConfigError([f"ratio must be positive, got {ratio}"])
    delta = effect * baseline if relative else effect
    if delta == 0:
        raise ConfigError(["effect must be non-zero"])
    k = ratio
    if metric == "rate":
        p0, p1 = baseline, baseline + delta
        if not (0 < p0 < 1 and 0 < p1 < 1):
            raise ConfigError([f"rates must be in (0, 1): baseline {p0}, with the effect {p1}"])
        pbar = (p0 + k * p1) / (1 + k)
        n0 = (za * np.sqrt(pbar * (1 - pbar) * (1 + 1 / k))
              + zb * np.sqrt(p0 * (1 - p0) + p1 * (1 - p1) / k)) ** 2 / delta**2
    elif metric == "mean":
        if sd is None or sd <= 0:
            raise ConfigError(["metric='mean' needs the outcome's standard deviation sd > 0"])
        n0 = (za + zb) ** 2 * sd**2 * (1 + 1 / k) / delta**2
    else:
        raise ConfigError([f"metric must be 'rate' or 'mean', got {metric!r}"])
    n0 = int(np.ceil(n0 - 1e-9))
    return PowerPlan(metric, baseline, delta, alpha, power, ratio, n0, int(np.ceil(n0 * k - 1e-9)))


def power_of(*, n_control: int, baseline: float, effect: float, metric: str = "rate",
             sd: float | None = None, alpha: float = 0.05, ratio: float = 1.0) -> float:
    """Power of a two-sided test with ``n_control`` control customers (and ``ratio`` × as many
    treated) to detect an absolute ``effect``; the inverse of :func:`sample_size`."""
    za, _ = _z(alpha, 0.5)
    k, n1 = ratio, n_control * ratio
    if metric == "rate":
        p0, p1 = baseline, baseline + effect
        pbar = (p0 + k * p1) / (1 + k)
        se0 = np.sqrt(pbar * (1 - pbar) * (1 / n_control + 1 / n1))
        se1 = np.sqrt(p0 * (1 - p0) / n_control + p1 * (1 - p1) / n1)
        return float(stats.norm.cdf((abs(effect) - za * se0) / se1))
    if sd is None or sd <= 0:
        raise ConfigError(["metric='mean' needs the outcome's standard deviation sd > 0"])
    se = sd * np.sqrt(1 / n_control + 1 / n1)
    return float(stats.norm.cdf(abs(effect) / se - za))


def baseline_from_history(transactions: ibis.Table, *, as_of: dt.date, window_days: int) -> dict:
    """What an untreated window looks like: the repurchase rate, mean and sd of spend over
    ``[as_of − window_days, as_of)`` among customers who had bought before that window."""
    start = pd.Timestamp(as_of) - pd.Timedelta(days=window_days)
    tx = transactions.filter(transactions.amount > 0)
    base = tx.filter(tx.ts < start.to_pydatetime()).select("customer_id").distinct()
    win = tx.filter((tx.ts >= start.to_pydatetime()) & (tx.ts < pd.Timestamp(as_of).to_pydatetime()))
    spend = win.group_by("customer_id").aggregate(spend=win.amount.sum().cast("float64"))
    j = base.left_join(spend, "customer_id")
    s = j.select(spend=j.spend.fill_null(0.0)).to_pandas()["spend"].to_numpy()
    if s.size < 2:
        raise ConfigError([f"fewer than 2 customers bought before {start.date()}: no baseline"])
    return {"customers": int(s.size), "repurchase_rate": float((s > 0).mean()),
            "spend_mean": float(s.mean()), "spend_sd": float(s.std(ddof=1)),
            "window_start": str(start.date()), "as_of": str(as_of)}
