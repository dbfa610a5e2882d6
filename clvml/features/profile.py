"""Profile features from the static customers table: sign-up tenure, acquisition channel, membership
tier, region and age band (categoricals are handled natively by LightGBM).

The profile is taken as given: a membership tier that is overwritten over time is the *current* tier,
which can leak the future into old cut-offs. Provide tier history as events if that matters.
"""

from __future__ import annotations

import ibis

from clvml.features.query import day_of
from clvml.features.registry import Feature, Say, family

FAM = family("profile", "customers", "prof")
R = FAM.register

R(Feature("signup_tenure_days", "Days from sign-up to the cut-off (null if signed up later).", "days",
          Say("signed up {value} ago", zero="signed up less than a day ago", missing="sign-up date unknown",
              kind="days"), fill=None, requires=("signup_ts",),
          derive=lambda c, w: ibis.ifelse(c.signup_day < c.cutoff_day, c.cutoff_day - c.signup_day,
                                          ibis.null("int64")), calendar=True, whole=True))
for _col, _desc in (("acquisition_channel", "Acquisition channel."),
                    ("membership_tier", "Membership tier."), ("region", "Region.")):
    _what = _col.replace("_", " ")
    R(Feature(_col, _desc, "category", Say(f"{_what} is {{value}}", missing=f"{_what} unknown", kind="category"),
              fill=None,
              dtype="categorical", requires=(_col,), derive=lambda c, w, _c=_col: c[_c]))
R(Feature("age_band", "Age band at the cut-off (<25, 25-34, 35-44, 45-54, 55-64, 65+).", "category",
          Say("age band {value}", missing="age unknown", kind="category"),
          fill=None, dtype="categorical", requires=("birth_year",),
          derive=lambda c, w: _age_band(c)))


def _age_band(c: ibis.Table) -> ibis.Value:
    age = (c.cutoff_day.cast("float64") / 365.2425 + 1970).floor() - c.birth_year
    return ibis.cases((age < 25, "<25"), (age < 35, "25-34"), (age < 45, "35-44"), (age < 55, "45-54"),
                      (age < 65, "55-64"), (age >= 65, "65+"), else_=ibis.null("string"))


def build(customers: ibis.Table, base: ibis.Table) -> ibis.Table:
    """Profile features for the (customer, cut-off) rows of ``base``."""
    cust = customers
    if "signup_ts" in cust.columns:
        cust = cust.mutate(signup_day=day_of(cust.signup_ts))
    j = base.select("customer_id", "cutoff_day").left_join(cust, "customer_id")
    j = j.drop("customer_id_right") if "customer_id_right" in j.columns else j
    out = {}
    for f in FAM.active(customers.columns):
        out[f"{FAM.prefix}_{f.name}"] = f.derive(j, None)
    return j.select("customer_id", "cutoff_day", **out)
