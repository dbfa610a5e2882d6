"""Reason-code texts (what account managers read): every catalog feature's template reads right for 0, 1,
many, missing and negative zero."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from clvml.explain.drivers import BIAS
from clvml.explain.reasons import reason_codes
from clvml.features import catalog
from clvml.features.registry import _CHOICE, FeatureSpec
from clvml.modeling.training import BTYD_SPECS

SPECS = catalog() + BTYD_SPECS
CASES = [0, 0.0, 1, 1.0, 2, 37.5, None, float("nan"), -0.0, np.float64(-0.0), np.int64(1), np.float64(2.0), pd.NA]
UNITS = [("second", "seconds"), ("minute", "minutes"), ("hour", "hours"), ("day", "days"), ("year", "years")]
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")


def _nouns() -> dict[str, str]:
    """Every word whose number must agree with a count: word -> 'one' / 'many'."""
    out = {}
    for s in SPECS:
        for t in (s.say.text, s.say.zero or "", s.say.negative or "", s.say.missing or ""):
            for one, many in [*_CHOICE.findall(t), *UNITS]:
                out[one.split()[-1]] = "one"
                out[many.split()[-1]] = "many"
    return out


NOUNS = _nouns()


def _agreement_errors(text: str) -> list[str]:
    words = text.split()
    errors = []
    for i, w in enumerate(words):
        if not NUMBER.match(w):
            continue
        for nxt in words[i + 1:i + 4]:  # "2 page views", "1 more order", "3 referred friends"
            if nxt in NOUNS:
                want = "one" if w in ("1", "-1") else "many"
                if NOUNS[nxt] != want:
                    errors.append(f"{w} {nxt}")
                break
    return errors


def test_every_catalog_feature_has_a_template_in_its_registry_metadata():
    assert len(catalog()) == 153
    assert all(s.say is not None and s.sentence == s.say.text for s in SPECS)
    assert all(s.say.missing or s.say.zero for s in SPECS)  # a sentence for "no value"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_template_reads_right_for_zero_one_many_missing_and_negative_zero(spec):
    cases = CASES + (["promoter", "25-34"] if spec.dtype == "categorical" else [])
    for value in cases:
        text = spec.explain(value)
        assert text and text == text.strip() and "  " not in text, (value, text)
        assert "no data days" not in text and "1 times" not in text, (value, text)
        assert "-0" not in text, (value, text)
        assert not re.search(r"\bnan\b|\bNone\b|<NA>|\binf\b", text, re.IGNORECASE), (value, text)
        assert not re.search(r"[{}|]", text), (value, text)  # every placeholder filled
        assert _agreement_errors(text) == [], (value, text)


def test_texts_from_the_issue_now_read_as_sentences():
    by = {s.name: s for s in SPECS}
    assert by["tx_ipt_mean"].explain(None) == "no purchase gap yet (one order so far)"
    assert by["tx_ipt_mean"].explain(1.0) == "usually buys every day"
    assert by["tx_ipt_mean"].explain(37.5) == "usually buys every 38 days"
    assert by["soc_days_since_social"].explain(float("nan")) == "no social interactions recorded"
    assert [by["act_closed"].explain(v) for v in (0, 1, 2)] == [
        "has not closed the account", "has closed the account", "has closed the account"]
    assert by["act_duration_90d"].explain(0.0) == "no time on site in the last 90 days"
    assert by["act_duration_90d"].explain(5400.0) == "spent 1.5 hours on site in the last 90 days"
    assert by["act_duration_90d"].explain(1.0) == "spent 1 second on site in the last 90 days"
    assert by["as_nps_last"].explain(-0.0) == "latest NPS answer 0/10"
    assert [by["tx_orders_30d"].explain(v) for v in (0, 1, 2)] == [
        "no orders in the last 30 days", "1 order in the last 30 days", "2 orders in the last 30 days"]
    assert [by["tx_orders_trend_90d"].explain(v) for v in (-1, 0, 3)] == [
        "1 fewer order than in the previous 90 days", "as many orders as in the previous 90 days",
        "3 more orders than in the previous 90 days"]
    assert by["tx_discount_share_90d"].explain(0.25) == "25% of order value was discounted in the last 90 days"
    assert by["tx_recency_days"].explain(800.0) == "last purchase 2.2 years ago"
    assert by["prof_region"].explain(None) == "region unknown"
    assert by["as_nps_category"].explain("detractor") == "is a detractor (latest NPS answer)"


def test_reason_codes_use_the_templates_also_for_specs_from_older_bundles():
    # bundles written before the templates pickled FeatureSpecs without `say`: the registry's is used
    by = {s.name: s for s in SPECS}
    names = ["tx_ipt_mean", "soc_days_since_social", "act_closed", "as_nps_last"]
    old = [dataclasses.replace(by[n], say=None) for n in names]
    assert all(isinstance(s, FeatureSpec) and s.say is None for s in old)
    contrib = pd.DataFrame({n: [1.0 - i / 10, 1.0 - i / 10] for i, n in enumerate(names)} | {BIAS: [0.0, 0.0]})
    X = pd.DataFrame({"tx_ipt_mean": [np.nan, 1.0], "soc_days_since_social": [np.nan, 3.0],
                      "act_closed": [1.0, 0.0], "as_nps_last": [-0.0, 7.0]})
    for specs in (old, [by[n] for n in names]):
        rc = reason_codes(contrib, X, specs, k=4)
        assert rc.filter(like="_text").to_numpy().tolist() == [
            ["no purchase gap yet (one order so far)", "no social interactions recorded", "has closed the account",
             "latest NPS answer 0/10"],
            ["usually buys every day", "last social interaction 3 days ago", "has not closed the account",
             "latest NPS answer 7/10"]]
