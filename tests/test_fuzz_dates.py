"""Property-based fuzzing of CSV dates (issue 24.2): whatever form the dates of an export take, with or
without a configured ``timestamp_format``, a file either reads every date as the day it means or is
refused with exit 3 naming the column — never read in the wrong day/month order without a word."""

from __future__ import annotations

import datetime as dt

import hypothesis.strategies as st
import pandas as pd
from hypothesis import HealthCheck, given, settings

from clvml.config import DataConfig
from clvml.data.dataset import load_dataset
from clvml.errors import ClvmlError

FORMS = {  # strftime form -> (day/month order ambiguous without a format?)
    "%Y-%m-%d": False, "%Y-%m-%dT%H:%M:%S": False, "%Y-%m-%d %H:%M": False, "%Y/%m/%d": False,
    "%m/%d/%Y": True, "%d/%m/%Y": True, "%m/%d/%Y %H:%M": True, "%d/%m/%Y %H:%M": True,
    "%d.%m.%Y": True, "%d.%m.%Y %H:%M": True,
}
DAYS = st.datetimes(min_value=dt.datetime(2023, 1, 1), max_value=dt.datetime(2024, 12, 31)).map(
    lambda t: t.replace(second=0, microsecond=0))
OUTCOMES: dict[str, int] = {}


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow,
                                                                                    HealthCheck.function_scoped_fixture])
@given(form=st.sampled_from(sorted(FORMS)), stamps=st.lists(DAYS, min_size=1, max_size=12),
       low_days=st.booleans(), configured=st.booleans(), files=st.integers(1, 3))
def test_csv_dates_are_read_as_meant_or_refused(tmp_path_factory, form, stamps, low_days, configured, files):
    if low_days:  # every day <= 12: the order is provable only by a format
        stamps = [t.replace(day=min(t.day, 12)) for t in stamps]
    if ":" not in form:
        stamps = [t.replace(hour=0, minute=0) for t in stamps]
    folder = tmp_path_factory.mktemp("dates")
    parts = [stamps[i::files] for i in range(files)]
    for i, part in enumerate(parts):
        body = "".join(f"c{i}_{j},{t.strftime(form)},{j + 1}.25\n" for j, t in enumerate(part))
        (folder / f"month{i}.csv").write_text("customer_id,ts,amount\n" + body)
    src = {"path": str(folder)} | ({"timestamp_format": form} if configured else {})
    try:
        ds = load_dataset(DataConfig.model_validate({"tables": {"transactions": src}}))
    except ClvmlError as exc:
        assert exc.exit_code == 3, exc
        text = str(exc)
        assert "transactions" in text and "ts" in text, text
        ambiguous = FORMS[form] and not configured
        # refused only where the order cannot be proven from the whole folder
        proven = any(t.day > 12 and t.day != t.month for t in stamps)
        assert ambiguous and not proven, (form, stamps, text)
        assert "could be" in text and "timestamp_format" in text, text
        OUTCOMES["refused"] = OUTCOMES.get("refused", 0) + 1
        return
    got = ds["transactions"].to_pandas()
    want = {f"c{i}_{j}": pd.Timestamp(t) for i, part in enumerate(parts) for j, t in enumerate(part)}
    assert {r.customer_id: pd.Timestamp(r.ts).tz_localize(None) if pd.Timestamp(r.ts).tzinfo else pd.Timestamp(r.ts)
            for r in got.itertuples()} == want
    OUTCOMES["read"] = OUTCOMES.get("read", 0) + 1


def test_date_fuzz_reached_both_outcomes():
    assert OUTCOMES.get("read", 0) > 0 and OUTCOMES.get("refused", 0) > 0, OUTCOMES
