import duckdb
import numpy as np
import pandas as pd
import pytest

from clvml.config import DataConfig
from clvml.data.dataset import load_dataset
from clvml.errors import DataSourceError, DataValidationError


def cfg(**kw):
    return DataConfig.model_validate({"tables": {"transactions": {}}, **kw})


def problems(exc):
    return {(p.table, p.column, p.check): p for p in exc.value.report.problems}


def good_tx():
    return pd.DataFrame({"customer_id": ["a", "a", "b"],
                         "ts": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-03"]),
                         "amount": [10.0, -2.0, 5.0]})


def test_clean_data_passes_and_counts_rows():
    ds = load_dataset(cfg(), {"transactions": good_tx()})
    assert ds.report.ok and ds.report.problems == []
    assert ds.report.rows_in == {"transactions": 3} and ds.report.rows_out == {"transactions": 3}


def test_every_problem_is_reported_at_once_with_counts_and_examples():
    t = pd.DataFrame({
        "cust": ["a", "a", "b", None, "c", "c", "d"],
        "ts": ["2024-01-01", "2024-01-02", "not a date", "2024-01-03", "2024-01-02", "2024-01-02",
               "2025-06-01"],
        "amount": [1.0, np.nan, 3, 4, np.inf, np.inf, 2.0],
    })
    c = DataConfig.model_validate({"tables": {"transactions": {"columns": {"customer_id": "cust"}}},
                                   "as_of": "2024-12-31"})
    with pytest.raises(DataValidationError) as exc:
        load_dataset(c, {"transactions": t})
    p = problems(exc)
    assert p[("transactions", "customer_id", "null_id")].n_rows == 1
    assert p[("transactions", "ts", "bad_ts")].n_rows == 1
    assert p[("transactions", "ts", "bad_ts")].examples[0]["ts"] == "not a date"
    assert p[("transactions", "amount", "nonfinite_amount")].n_rows == 2
    assert p[("transactions", "amount", "null_amount")].n_rows == 1
    assert p[("transactions", "ts", "future")].n_rows == 1
    assert p[("transactions", None, "duplicates")].n_rows == 1
    msg = str(exc.value)
    assert "your column 'cust'" in msg and "fix:" in msg and "e.g." in msg


def test_missing_required_column_names_the_mapping_key():
    t = good_tx().rename(columns={"amount": "total"})
    with pytest.raises(DataValidationError, match=r"(?s)required column 'amount' is missing.*columns.amount"):
        load_dataset(cfg(), {"transactions": t})


def test_wrong_type_amount():
    t = good_tx().astype({"amount": str})
    t.loc[1, "amount"] = "ten"
    with pytest.raises(DataValidationError) as exc:
        load_dataset(cfg(), {"transactions": t})
    assert problems(exc)[("transactions", "amount", "bad_amount")].n_rows == 1


def test_drop_policies_drop_and_count_every_row():
    t = pd.concat([good_tx(), good_tx().iloc[[0]]], ignore_index=True)
    t.loc[len(t)] = ["z", pd.Timestamp("2030-01-01"), 1.0]
    c = DataConfig.model_validate({"tables": {"transactions": {}}, "as_of": "2024-12-31",
                                   "policies": {"duplicates": "drop", "future_events": "drop"}})
    ds = load_dataset(c, {"transactions": t})
    assert ds.report.dropped == {"transactions": {"future": 1, "duplicates": 1}}
    assert ds.report.rows_in["transactions"] == 5 and ds.report.rows_out["transactions"] == 3
    assert ds.report.rows_in["transactions"] - sum(ds.report.dropped["transactions"].values()) == 3


def test_event_types_mapping_and_unknowns():
    act = pd.DataFrame({"customer_id": ["a", "a", "b"], "ts": pd.to_datetime(["2024-01-01"] * 3),
                        "event_type": ["LOGIN", "view", "teleport"]})
    c = DataConfig.model_validate({"tables": {"transactions": {}, "activity": {
        "event_types": {"login": ["LOGIN"], "page_view": ["view"]}}}})
    with pytest.raises(DataValidationError) as exc:
        load_dataset(c, {"transactions": good_tx(), "activity": act})
    p = problems(exc)[("activity", "event_type", "unknown_event")]
    assert p.n_rows == 1 and p.examples[0]["event_type"] == "teleport"
    c.policies.unknown_event_types = "drop"
    ds = load_dataset(c, {"transactions": good_tx(), "activity": act})
    assert sorted(ds["activity"].to_pandas().event_type) == ["login", "page_view"]
    assert ds.report.dropped["activity"] == {"unknown_event": 1}


def test_orphan_customers():
    cust = pd.DataFrame({"customer_id": ["a"]})
    with pytest.raises(DataValidationError) as exc:
        load_dataset(cfg(), {"transactions": good_tx(), "customers": cust})
    p = problems(exc)[("transactions", "customer_id", "orphan_customers")]
    assert p.n_rows == 1 and p.examples == [{"customer_id": "b"}]
    c = cfg(policies={"orphan_customers": "drop"})
    ds = load_dataset(c, {"transactions": good_tx(), "customers": cust})
    assert ds.report.rows_out["transactions"] == 2


def test_timezone_aware_timestamps_become_utc():
    t = good_tx()
    t["ts"] = pd.to_datetime(["2024-01-01 01:30"] * 3).tz_localize("Europe/Paris")
    t["amount"] = [1.0, 2.0, 3.0]
    ds = load_dataset(cfg(), {"transactions": t})
    assert str(ds["transactions"].to_pandas().ts.iloc[0]) == "2024-01-01 00:30:00"


def test_csv_keeps_leading_zero_ids_and_custom_format(tmp_path):
    p = tmp_path / "tx.csv"
    p.write_text("cid,day,usd\n00042,20240105,3.5\n42,20240106,1.0\n")
    c = DataConfig.model_validate({"tables": {"transactions": {
        "path": str(p), "columns": {"customer_id": "cid", "ts": "day", "amount": "usd"},
        "timestamp_format": "%Y%m%d"}}})
    df = load_dataset(c)["transactions"].to_pandas()
    assert sorted(df.customer_id) == ["00042", "42"]
    assert str(df.ts.min()) == "2024-01-05 00:00:00"


def test_parquet_and_duckdb_sources(tmp_path):
    good_tx().to_parquet(tmp_path / "tx.parquet")
    ds = load_dataset(DataConfig.model_validate({"tables": {"transactions": {"path": str(tmp_path / "tx.parquet")}}}))
    assert ds.report.rows_out["transactions"] == 3
    db = tmp_path / "shop.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create table orders as select * from read_parquet(?)", [str(tmp_path / "tx.parquet")])
    con.close()
    ds = load_dataset(DataConfig.model_validate({"tables": {"transactions": {"path": str(db), "table": "orders"}}}))
    assert ds.report.rows_out["transactions"] == 3


def test_missing_file_is_a_clear_error(tmp_path):
    c = DataConfig.model_validate({"tables": {"transactions": {"path": str(tmp_path / "nope.parquet")}}})
    with pytest.raises(DataSourceError, match="does not exist"):
        load_dataset(c)


def test_duplicate_customer_profiles():
    cust = pd.DataFrame({"customer_id": ["a", "a", "b"], "region": ["n", "s", "e"]})
    with pytest.raises(DataValidationError) as exc:
        load_dataset(cfg(), {"transactions": good_tx(), "customers": cust})
    assert problems(exc)[("customers", "customer_id", "duplicate_key")].n_rows == 1


def _null_ids_and_orphans():
    tx = pd.DataFrame({"customer_id": [None] * 25 + ["a", "z"],
                       "ts": pd.to_datetime(["2024-01-02"] * 27), "amount": [float(i) for i in range(27)]})
    return {"transactions": tx, "customers": pd.DataFrame({"customer_id": ["a"]})}


def test_null_ids_are_reported_once_not_again_as_orphans():
    with pytest.raises(DataValidationError) as exc:
        load_dataset(cfg(), _null_ids_and_orphans())
    got = [(p.check, p.n_rows, p.message) for p in exc.value.report.problems]
    assert got == [("null_id", 25, "null customer_id"),
                   ("orphan_customers", 1, "1 customer(s) absent from the customers table")]


def test_advice_never_asks_to_set_a_policy_already_set():
    c = DataConfig.model_validate({"tables": {"transactions": {}, "customers": {}},
                                   "policies": {"null_keys": "drop", "orphan_customers": "drop",
                                                "duplicates": "drop"}})
    frames = _null_ids_and_orphans()
    frames["transactions"] = pd.concat([frames["transactions"], frames["transactions"].tail(1)])  # a duplicate
    ds = load_dataset(c, frames)
    fixes = {p.check: p.fix for p in ds.report.problems}
    assert fixes == {
        "null_id": "remove these rows or fill the id; data.policies.null_keys: drop is already set",
        "duplicates": "de-duplicate the source; data.policies.duplicates: drop is already set",
        "orphan_customers": "add them to customers; data.policies.orphan_customers: drop is already set"}
    assert ds.report.rows_out["transactions"] == 1  # only customer a's row is left


def test_row_hashes_prove_distinct_rows_and_never_hide_a_duplicate():
    import ibis

    from clvml.data.validation import rows_hash_distinct

    con = ibis.duckdb.connect()
    rows = pd.DataFrame({"customer_id": ["a", "a", "b", None], "ts": pd.to_datetime(["2024-01-01"] * 4),
                         "amount": [1.0, 2.0, 1.0, None], 'odd "name"': ["x", "x", "x", "x"]})
    t = con.create_table("t", rows)
    assert rows_hash_distinct(t, 4) is True
    dup = con.create_table("d", pd.concat([rows, rows.iloc[[3]]], ignore_index=True))  # the all-null-ish row twice
    assert rows_hash_distinct(dup, 5) is False
    assert rows_hash_distinct(dup.limit(0), 0) is True


def test_the_stored_table_keeps_no_check_flags_once_they_are_counted(monkeypatch):
    import clvml.data.validation as validation

    monkeypatch.setattr(validation, "LARGE_TABLE_ROWS", 3)  # (100k rows and up by default)
    ds = load_dataset(cfg(), {"transactions": good_tx()})
    stored = ds.con.raw_sql("SELECT table_name, column_name FROM duckdb_columns() "
                            "WHERE table_name LIKE 'clvml_typed_transactions%'").fetchall()
    assert stored and all(c.startswith("t_") for _, c in stored), stored  # only the typed values
    got = ds.tables["transactions"].order_by(["customer_id", "ts"]).to_pandas()
    assert got["amount"].tolist() == [10.0, -2.0, 5.0] and got["customer_id"].tolist() == ["a", "a", "b"]
