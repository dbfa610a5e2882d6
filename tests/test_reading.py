"""Reading real files: dates typed by what the whole file proves (not by a sniffer's guess), supported
ranges of dates and amounts, headers, long fields and engine errors — on real DuckDB and real files."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clvml.config import DataConfig
from clvml.data.dataset import load_dataset
from clvml.errors import DataSourceError, DataValidationError
from clvml.features import build_features, to_pandas
from tests.conftest import tx


def source(path, **kw):
    return DataConfig.model_validate({"tables": {"transactions": {"path": str(path), **kw}}})


def problems(exc):
    return {(p.table, p.column, p.check): p for p in exc.value.report.problems}


def rows(ds, name="transactions"):
    df = ds[name].to_pandas().sort_values(["customer_id", "ts"])
    return [(r.customer_id, str(r.ts), r.amount) for r in df.itertuples()]


# --- A: day/month order -------------------------------------------------------------------------

US = "customer_id,ts,amount\na,03/04/2024,1.5\nb,05/06/2024,2\nc,07/07/2024,3\n"


def test_mm_dd_csv_with_every_day_up_to_12_is_refused_naming_both_readings(tmp_path):
    # the sniffer used to read this as dd/mm without a word: 03/04 became 3 April
    (tmp_path / "tx.csv").write_text(US)
    with pytest.raises(DataValidationError) as exc:
        load_dataset(source(tmp_path / "tx.csv"))
    p = problems(exc)[("transactions", "ts", "ambiguous_date")]
    assert p.n_rows == 2  # 07/07/2024 reads the same either way
    assert p.message.startswith("ts: 03/04/2024 could be 2024-03-04 (mm/dd) or 2024-04-03 (dd/mm)")
    assert p.fix == "set data.tables.transactions.timestamp_format: '%m/%d/%Y' or '%d/%m/%Y'"
    assert "null_keys" not in p.fix and exc.value.exit_code == 3


def test_mm_dd_csv_with_the_configured_format_is_read_in_that_order(tmp_path):
    (tmp_path / "tx.csv").write_text(US)
    ds = load_dataset(source(tmp_path / "tx.csv", timestamp_format="%m/%d/%Y"))
    assert rows(ds) == [("a", "2024-03-04 00:00:00", 1.5), ("b", "2024-05-06 00:00:00", 2.0),
                        ("c", "2024-07-07 00:00:00", 3.0)]
    ds = load_dataset(source(tmp_path / "tx.csv", timestamp_format="%d/%m/%Y"))
    assert [r[1] for r in rows(ds)] == ["2024-04-03 00:00:00", "2024-06-05 00:00:00",
                                        "2024-07-07 00:00:00"]


def test_configured_format_counts_values_it_cannot_parse(tmp_path):
    (tmp_path / "tx.csv").write_text(US + "d,2024-01-02,4\n")
    c = source(tmp_path / "tx.csv", timestamp_format="%m/%d/%Y")
    with pytest.raises(DataValidationError) as exc:
        load_dataset(c)
    p = problems(exc)[("transactions", "ts", "bad_ts")]
    assert p.n_rows == 1 and p.examples == [{"customer_id": "d", "ts": "2024-01-02", "amount": "4"}]
    c.policies.null_keys = "drop"
    ds = load_dataset(c)
    assert ds.report.dropped == {"transactions": {"bad_ts": 1}} and ds.report.rows_out["transactions"] == 3


def test_folder_of_monthly_csvs_is_read_in_one_order_proven_by_a_later_file(tmp_path):
    # only the March file has a day above 12; the sniffer read January and February as dd/mm
    (tmp_path / "2024-01.csv").write_text("customer_id,ts,amount\na,01/02/2024,1\nb,01/03/2024,2\n")
    (tmp_path / "2024-02.csv").write_text("customer_id,ts,amount\na,02/03/2024,3\n")
    (tmp_path / "2024-03.csv").write_text("customer_id,ts,amount\nb,03/14/2024,4\n")
    ds = load_dataset(source(tmp_path))
    assert rows(ds) == [("a", "2024-01-02 00:00:00", 1.0), ("a", "2024-02-03 00:00:00", 3.0),
                        ("b", "2024-01-03 00:00:00", 2.0), ("b", "2024-03-14 00:00:00", 4.0)]


def test_dd_mm_proven_by_one_day_above_12_and_dotted_dates_with_times(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\na,03.04.2024 10:30,1\nb,25.12.2023 23:59:59,2\n")
    assert rows(load_dataset(source(tmp_path / "tx.csv"))) == [
        ("a", "2024-04-03 10:30:00", 1.0), ("b", "2023-12-25 23:59:59", 2.0)]


def test_column_mixing_both_orders_is_refused_once(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\na,13/02/2024,1\nb,02/14/2024,2\n")
    with pytest.raises(DataValidationError) as exc:
        load_dataset(source(tmp_path / "tx.csv"))
    assert [(p.check, p.n_rows) for p in exc.value.report.problems] == [("mixed_date_order", 2)]
    assert "'13/02/2024' can only be dd/mm" in str(exc.value)


def test_iso_text_with_offsets_is_utc_and_other_text_is_unparseable(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\na,2024-03-04,1\nb,2024-01-02T10:00:00+02:00,2\n"
                                     "c,2024/01/31 08:00,3\nd,Jan 5 2024,4\n")
    with pytest.raises(DataValidationError) as exc:
        load_dataset(source(tmp_path / "tx.csv"))
    p = problems(exc)[("transactions", "ts", "bad_ts")]
    assert p.n_rows == 1 and p.examples[0]["ts"] == "Jan 5 2024"
    ds = load_dataset(DataConfig.model_validate({"tables": {"transactions": {"path": str(tmp_path / "tx.csv")}},
                                                 "policies": {"null_keys": "drop"}}))
    assert rows(ds) == [("a", "2024-03-04 00:00:00", 1.0), ("b", "2024-01-02 08:00:00", 2.0),
                        ("c", "2024-01-31 08:00:00", 3.0)]


def test_text_timestamps_in_memory_keep_their_offset():
    # DuckDB's TIMESTAMP cast ignores an offset ('10:00+02' became 10:00); it is converted to UTC
    t = pd.DataFrame({"customer_id": ["a"], "ts": ["2024-01-02 10:00:00+02"], "amount": [1.0]})
    assert rows(load_dataset(frames={"transactions": t})) == [("a", "2024-01-02 08:00:00", 1.0)]


def test_cli_validate_refuses_ambiguous_dates_with_exit_3_and_the_format_hint(tmp_path):
    from typer.testing import CliRunner

    from clvml.cli import app

    (tmp_path / "tx.csv").write_text(US)
    (tmp_path / "c.yaml").write_text("data:\n  tables:\n    transactions:\n      path: tx.csv\ncutoffs:\n  start: 2024-01-01\n")
    res = CliRunner().invoke(app, ["validate", str(tmp_path / "c.yaml")])
    assert res.exit_code == 3, res.output
    assert "timestamp_format: '%m/%d/%Y' or '%d/%m/%Y'" in " ".join(res.output.split())


# --- B: supported date range --------------------------------------------------------------------

def _parquet_ts(path, micros: list[int], amounts=None):
    n = len(micros)
    pq.write_table(pa.table({"customer_id": [f"c{k}" for k in range(n)],
                             "ts": pa.array(micros, pa.timestamp("us")),
                             "amount": amounts or [1.0] * n}), path)


def _us(d: dt.datetime) -> int:
    return (d - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)


def test_timestamps_outside_the_supported_range_are_bad_values(tmp_path):
    # year 10000 and year 1 were read fine (and then crashed train/score with OverflowError)
    y10000 = _us(dt.datetime(9999, 12, 31)) + 86_400_000_000
    micros = [_us(dt.datetime(2024, 1, 1)), y10000, _us(dt.datetime(1, 1, 1)),
              _us(dt.datetime(2262, 4, 10, 23, 59)), _us(dt.datetime(2262, 4, 11)),
              _us(dt.datetime(1900, 1, 1)), _us(dt.datetime(1899, 12, 30))]
    _parquet_ts(tmp_path / "tx.parquet", micros)
    with pytest.raises(DataValidationError) as exc:
        load_dataset(source(tmp_path / "tx.parquet"))
    p = problems(exc)[("transactions", "ts", "range_ts")]
    assert p.n_rows == 4 and exc.value.exit_code == 3
    assert "outside the supported range 1900-01-01 to 2262-04-10 23:59:59" in p.message
    assert [e["customer_id"] for e in p.examples] == ["c1", "c2", "c4"]  # ordered by id; year 10000 as text
    c = DataConfig.model_validate({"tables": {"transactions": {"path": str(tmp_path / "tx.parquet")}},
                                   "policies": {"null_keys": "drop"}})
    ds = load_dataset(c)
    assert ds.report.dropped == {"transactions": {"range_ts": 4}} and ds.report.rows_out["transactions"] == 3
    f = to_pandas(build_features(ds.tables, [dt.date(2262, 4, 11)], windows=[30], families=["transactions"]))
    assert sorted(f.customer_id) == ["c0", "c3", "c5"]


def test_text_and_optional_timestamps_are_range_checked_too(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\na,1899-12-30,1\nb,2024-01-01,2\n")
    (tmp_path / "cust.csv").write_text("customer_id,signup_ts\na,2024-01-01\nb,9999-12-31\n")
    c = DataConfig.model_validate({"tables": {"transactions": {"path": str(tmp_path / "tx.csv")},
                                              "customers": {"path": str(tmp_path / "cust.csv")}}})
    with pytest.raises(DataValidationError) as exc:
        load_dataset(c)
    p = problems(exc)
    assert p[("transactions", "ts", "range_ts")].examples == [{"customer_id": "a", "ts": "1899-12-30",
                                                               "amount": "1"}]
    assert p[("customers", "signup_ts", "range_signup_ts")].n_rows == 1


# --- D: amounts up to the bound -----------------------------------------------------------------

def test_spreads_of_orders_up_to_1e12_do_not_overflow_and_are_exact():
    # squares were summed in int64 units of 1e-4: any order above ~3.03e7 crashed train and score
    t = tx([("a", "2024-01-01", 1e12), ("a", "2024-01-02", 5e11), ("a", "2024-01-02", 1e12),
            ("b", "2024-01-05", 30_000_001.0), ("b", "2024-01-06", 50_000_000.0),
            ("c", "2024-01-05", -1e12), ("c", "2024-01-06", 2.0), ("c", "2024-01-07", 4.0)])
    ds = load_dataset(frames={"transactions": t})
    runs = [to_pandas(build_features(ds.tables, [dt.date(2024, 2, 1)], windows=[30],
                                     families=["transactions"])).set_index("customer_id")
            for _ in range(3)]
    for other in runs[1:]:
        pd.testing.assert_frame_equal(runs[0], other, check_exact=True)
    f = runs[0]
    assert f.loc["a", "tx_spend_all"] == 2.5e12 and f.loc["a", "tx_spend_max_all"] == 1e12
    assert f.loc["a", "tx_spend_std_all"] == pytest.approx(math.sqrt(((1e12 - 2.5e12 / 3) ** 2 * 2
                                                                       + (5e11 - 2.5e12 / 3) ** 2) / 2), rel=1e-12)
    assert f.loc["a", "tx_spend_std_30d"] == pytest.approx(math.sqrt(2) * 2.5e11, rel=1e-12)
    assert f.loc["b", "tx_spend_std_all"] == pytest.approx(math.sqrt(2) * (50_000_000 - 30_000_001) / 2,
                                                           rel=1e-12)
    assert f.loc["c", "tx_spend_std_all"] == math.sqrt(2) and f.loc["c", "tx_refund_amount_all"] == 1e12


def test_customer_totals_far_beyond_int64_units_do_not_overflow():
    # 400 orders of 1e12: 4e20 units of 1e-6 passed through BIGINT (max 9.2e18) and crashed; the
    # category concentration squared 4e14 into DECIMAL(38, 9) (max 1e29)
    t = pd.DataFrame({"customer_id": "a", "ts": pd.date_range("2023-01-01", periods=400, freq="D"),
                      "amount": 1e12, "category": ["x"] * 399 + ["y"], "discount": 1e12})
    ds = load_dataset(frames={"transactions": t})
    f = to_pandas(build_features(ds.tables, [dt.date(2024, 3, 1)], windows=[30], families=["transactions"]))
    a = f.set_index("customer_id").loc["a"]
    assert a.tx_spend_all == 4e14 and a.tx_spend_30d == 5e12 and a.tx_orders_all == 400
    assert a.tx_category_hhi == pytest.approx((399**2 + 1) / 400**2, rel=1e-12)
    assert a.tx_discount_share_all == 0.5
    assert abs(a.tx_spend_std_all) < 1e12 * 1e-7  # 0 up to the float64 resolution of the moments


def test_amounts_beyond_1e12_are_bad_values_naming_the_rows(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount,discount\na,2024-01-01,1000000000000,0\n"
                                     "b,2024-01-02,-1000000000001,0\nc,2024-01-03,5,2e12\n")
    with pytest.raises(DataValidationError) as exc:
        load_dataset(source(tmp_path / "tx.csv"))
    p = problems(exc)
    assert p[("transactions", "amount", "range_amount")].n_rows == 1
    assert p[("transactions", "amount", "range_amount")].examples[0]["customer_id"] == "b"
    assert p[("transactions", "discount", "range_discount")].n_rows == 1
    assert "beyond ±1e12" in p[("transactions", "amount", "range_amount")].message


# --- C: empty files and mapped columns that are not there ---------------------------------------

def test_empty_csv_file_is_named(tmp_path):
    (tmp_path / "tx.csv").write_bytes(b"")
    with pytest.raises(DataSourceError, match=r"tx\.csv is empty \(0 bytes\): it has no header row") as exc:
        load_dataset(source(tmp_path / "tx.csv"))
    assert exc.value.exit_code == 3
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\na,2024-01-01,1\n")
    (tmp_path / "tx2.csv").write_bytes(b"")  # one empty month in a folder
    with pytest.raises(DataSourceError, match=r"tx2\.csv is empty"):
        load_dataset(source(tmp_path))


def test_mapped_columns_that_do_not_exist_say_which_columns_were_found(tmp_path):
    # the id mapping used to reach DuckDB as a column type: "Binder Error: COLUMN_TYPES error"
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\na,2024-01-01,1\n")
    with pytest.raises(DataValidationError) as exc:
        load_dataset(source(tmp_path / "tx.csv", columns={"customer_id": "cust_no", "discount": "disc"}))
    p = problems(exc)
    assert p[("transactions", "customer_id", "missing_column")].message == (
        "required column 'cust_no' is missing (found: customer_id, ts, amount)")
    assert p[("transactions", "discount", "missing_column")].message == (
        "mapped column 'disc' (data.tables.transactions.columns.discount) is not in the data "
        "(found: customer_id, ts, amount)")


# --- E: duplicate and blank column names --------------------------------------------------------

def test_two_columns_with_one_name_are_refused_naming_positions(tmp_path):
    # DuckDB renamed the second 'amount' (a discount) to amount_1 and the first was used silently
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount,amount\na,2024-01-01,10,-2\n")
    with pytest.raises(DataSourceError) as exc:
        load_dataset(source(tmp_path / "tx.csv"))
    assert exc.value.exit_code == 3
    assert f"table 'transactions': {tmp_path / 'tx.csv'} has 2 columns named 'amount' (positions 3, 4)" \
        in str(exc.value)


def test_blank_column_names_are_refused_in_every_file_of_a_folder(tmp_path):
    (tmp_path / "a.csv").write_text("customer_id,ts,amount\na,2024-01-01,10\n")
    (tmp_path / "b.csv").write_text("customer_id,,ts,amount\na,x,2024-01-02,10\n")
    with pytest.raises(DataSourceError, match=r"b\.csv has no name at position\(s\) 2 \(of 4 columns"):
        load_dataset(source(tmp_path))


def test_duplicate_names_in_memory_and_in_parquet(tmp_path):
    df = pd.DataFrame([["a", pd.Timestamp("2024-01-01"), 10.0, -2.0]],
                      columns=["customer_id", "ts", "amount", "amount"])
    with pytest.raises(DataSourceError, match=r"the in-memory frame has 2 columns named 'amount' \(positions 3, 4\)"):
        load_dataset(frames={"transactions": df})
    pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array([dt.datetime(2024, 1, 1)]),
                                         pa.array([10.0]), pa.array([-2.0])],
                                        names=["customer_id", "ts", "amount", "amount"]),
                   tmp_path / "tx.parquet")
    with pytest.raises(DataSourceError, match=r"has 2 columns named 'amount' \(positions 3, 4\)"):
        load_dataset(source(tmp_path / "tx.parquet"))


# --- G: engine errors when the rows are computed ------------------------------------------------

def _damaged_parquet(path):
    n = 2000
    df = pd.DataFrame({"customer_id": [f"c{k % 50}" for k in range(n)],
                       "ts": pd.date_range("2024-01-01", periods=n, freq="h"), "amount": [k * 1.5 for k in range(n)]})
    pq.write_table(pa.Table.from_pandas(df), path, compression="zstd")
    col = pq.ParquetFile(path).metadata.row_group(0).column(2)  # amount's compressed data page
    data = bytearray(path.read_bytes())
    for i in range(col.data_page_offset + 40, col.data_page_offset + 240):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def test_damaged_parquet_page_is_a_data_error_naming_table_and_file(tmp_path):
    # the footer reads fine; the page fails when the rows are converted, outside the reader's wrapper
    _damaged_parquet(tmp_path / "tx.parquet")
    with pytest.raises(DataSourceError) as exc:
        load_dataset(source(tmp_path / "tx.parquet"))
    assert exc.value.exit_code == 3
    assert str(exc.value).startswith(f"table 'transactions' ({tmp_path / 'tx.parquet'}): the data could "
                                     "not be read: ")
    assert "damaged" in str(exc.value)


def test_out_of_memory_is_an_engine_error_with_the_memory_hint(tmp_path):
    from typer.testing import CliRunner

    from clvml.cli import app

    big = pd.DataFrame({"customer_id": [f"c{k}" for k in range(300_000)], "ts": "2024-01-01", "amount": 1.0})
    big.to_csv(tmp_path / "tx.csv", index=False)
    (tmp_path / "c.yaml").write_text("data:\n  tables:\n    transactions:\n      path: tx.csv\n"
                                     "cutoffs:\n  start: 2024-01-01\nengine:\n  duckdb:\n    memory_limit: 1MB\n")
    res = CliRunner().invoke(app, ["validate", str(tmp_path / "c.yaml")])
    assert res.exit_code == 8, res.output
    out = " ".join(res.output.split())
    assert "table 'transactions' (" in out and "the engine ran out of memory" in out
    assert "raise engine.duckdb.memory_limit, or set engine.duckdb.temp_directory" in out


# --- F: long text fields ------------------------------------------------------------------------

def test_a_3_million_character_text_field_is_read(tmp_path):
    # DuckDB's sniffer refused any line above 2 MiB ("Maximum line size ... exceeded")
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount,category,note\n"
                                     f"a,2024-01-01,1,{'x' * 3_000_000},{'y' * 3_000_000}\nb,2024-01-02,2,toys,\n")
    ds = load_dataset(source(tmp_path / "tx.csv"))
    df = ds["transactions"].to_pandas().sort_values("customer_id")
    assert df.category.str.len().tolist() == [3_000_000, 4] and ds.report.rows_out["transactions"] == 2


def test_a_line_above_the_limit_is_refused_stating_the_limit(tmp_path):
    (tmp_path / "tx.csv").write_text(f"customer_id,ts,amount,note\na,2024-01-01,1,{'x' * (16 * 2**20 + 10)}\n")
    with pytest.raises(DataSourceError) as exc:
        load_dataset(source(tmp_path / "tx.csv"))
    msg = str(exc.value)
    assert f"line 1 of {tmp_path / 'tx.csv'} is 16,777,242 bytes long, above the limit of 16,777,216 " \
           "bytes (16 MiB) per CSV line" in msg  # the line and its newline
    assert "xxxxxxxxxx" not in msg and len(msg) < 600 and exc.value.exit_code == 3


# --- encodings ------------------------------------------------------------------------------------

ACCENTED = "customer_id,ts,amount\nMüller,2024-03-04,1.5\nCôté,2024-05-06,2\n"


def test_utf16_csv_with_a_byte_order_mark_is_read_without_configuration(tmp_path):
    (tmp_path / "t.csv").write_bytes(ACCENTED.encode("utf-16"))  # Excel's "Unicode text"
    ds = load_dataset(source(tmp_path / "t.csv"))
    assert rows(ds) == [("Côté", "2024-05-06 00:00:00", 2.0), ("Müller", "2024-03-04 00:00:00", 1.5)]


def test_latin1_csv_is_read_with_the_encoding_key_and_refused_with_that_hint_without_it(tmp_path):
    (tmp_path / "t.csv").write_bytes(ACCENTED.encode("latin-1"))
    with pytest.raises(DataSourceError) as exc:
        load_dataset(source(tmp_path / "t.csv"))
    msg = str(exc.value)
    assert "not utf-8 encoded" in msg and "data.tables.transactions.encoding: latin-1" in msg
    assert "encoding='UTF-16'" not in msg  # DuckDB's own option, which a clvml user cannot set
    ds = load_dataset(source(tmp_path / "t.csv", encoding="latin-1"))
    assert rows(ds) == [("Côté", "2024-05-06 00:00:00", 2.0), ("Müller", "2024-03-04 00:00:00", 1.5)]
