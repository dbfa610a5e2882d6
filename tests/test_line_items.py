"""Issue 28.2: line-item exports (one row per order line, cancellations as negative invoices) grouped into
orders, and CSV numbers with thousands separators and decimal commas — on real DuckDB and real files."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clvml.cli import app
from clvml.config import DataConfig, load_config, parse_config
from clvml.config.expression import evaluate, parse
from clvml.data.dataset import load_dataset
from clvml.data.loading import load_data
from clvml.errors import ConfigError, DataValidationError
from clvml.features import build_features, to_pandas

LINE_COLUMNS = {"customer_id": "CustomerID", "ts": "InvoiceDate", "order_id": "InvoiceNo",
                "quantity": "Quantity", "category": "Cat"}


def line_config(**kw) -> DataConfig:
    src = {"grain": "line", "amount": "Quantity * UnitPrice", "product": "StockCode",
           "columns": LINE_COLUMNS} | kw
    return DataConfig.model_validate({"tables": {"transactions": src}, "policies": {
        "duplicates": "drop", "null_keys": "drop"}})


def lines_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice",
                                       "CustomerID", "Cat"])


def orders_of(ds) -> list[tuple]:
    df = ds["transactions"].to_pandas().sort_values(["customer_id", "ts", "order_id"])
    return [(r.customer_id, r.order_id, str(r.ts), r.amount, r.quantity, r.category) for r in df.itertuples()]


# --- the amount expression -------------------------------------------------------------------------

def test_expression_is_parsed_not_evaluated_by_python():
    e = parse("Quantity * (UnitPrice - 0.5) / -2 + 1e1")
    assert e.columns == ("Quantity", "UnitPrice")
    assert evaluate(e.tree, {"Quantity": 3.0, "UnitPrice": 2.5}.__getitem__) == 3 * 2.0 / -2 + 10
    for bad, says in [("__import__('os').system('x')", "unexpected \"'\" at position 12"),
                      ("Quantity ** 2", "expected a column name, a number or '(' at position 11"),
                      ("abs(Quantity)", "unexpected '(' at position 4"), ("(Quantity", "expected ')'"),
                      ("Quantity UnitPrice", "unexpected 'UnitPrice' at position 10"),
                      ("Quantity; 1", "unexpected ';' at position 9"), ("", "empty")]:
        with pytest.raises(ValueError) as exc:
            parse(bad)
        assert says in str(exc.value), (bad, str(exc.value))
    assert "nests deeper" in str(pytest.raises(ValueError, parse, "(" * 40 + "a" + ")" * 40).value)


def test_config_refuses_bad_line_options_with_exit_2():
    def problems(src: dict) -> str:
        with pytest.raises(ConfigError) as exc:
            parse_config({"data": {"tables": {"transactions": {"path": "x.csv", **src}}}})
        assert exc.value.exit_code == 2
        return str(exc.value)

    assert "only column names, numbers, + - * / and parentheses" in problems({"amount": "Quantity @ 2"})
    assert "keep one" in problems({"amount": "Quantity * UnitPrice", "columns": {"amount": "Total"}})
    assert "product applies to line items only" in problems({"product": "StockCode"})
    assert "set product:" in problems({"grain": "line", "basket": "products"})
    assert "thousands ',' and decimal ',' are the same character" in problems({"thousands": ",",
                                                                              "decimal": ","})
    assert "the decimal mark is '.' unless decimal is set" in problems({"thousands": "."})
    with pytest.raises(ConfigError, match="grain: line is for the transactions table only"):
        parse_config({"data": {"tables": {"transactions": {"path": "x.csv"},
                                          "activity": {"path": "a.csv", "grain": "line"}}}})


def test_expression_columns_must_exist_and_be_numbers():
    frame = lines_frame([("1", "A", 1, "2024-01-05 08:00", 2.0, "c1", "home")])
    cfg = line_config(amount="Quantity * Price")
    with pytest.raises(DataValidationError) as exc:
        load_dataset(cfg, {"transactions": frame})
    p = next(p for p in exc.value.report.problems if p.check == "missing_column")
    assert p.column == "Price"
    assert p.message.startswith("column 'Price' of the amount expression 'Quantity * Price' is not in the data")
    assert "UnitPrice" in p.message and p.fix == "fix the name in data.tables.transactions.amount"
    # at order grain the expression gives the amount and its columns are not kept
    cfg = DataConfig.model_validate({"tables": {"transactions": {
        "amount": "Quantity * UnitPrice + 1", "columns": {"customer_id": "CustomerID", "ts": "InvoiceDate"}}}})
    t = load_dataset(cfg, {"transactions": frame})["transactions"].to_pandas()
    assert list(t.columns) == ["customer_id", "ts", "amount"] and t.amount.tolist() == [3.0]


# --- lines -> orders: exact rows and counts ----------------------------------------------------------

HAND_BUILT = [
    # c1: two orders on 5 Jan, a cancellation of 9.50 the same day: the later order (4.00) goes, the
    # earlier one keeps 20.00 of its 25.50; O3 is a line exported twice (duplicates: drop)
    ("O1", "P1", 2, "2024-01-05 08:00", 10.00, "c1", "home"),
    ("O1", "P2", 1, "2024-01-05 08:00", 5.50, "c1", "toys"),
    ("O2", "P3", 1, "2024-01-05 12:00", 4.00, "c1", "home"),
    ("C1", "P3", -1, "2024-01-05 15:00", 4.00, "c1", "home"),
    ("C1", "P2", -1, "2024-01-05 15:00", 5.50, "c1", "toys"),
    ("O3", "P1", 1, "2024-01-20 10:00", 10.00, "c1", "home"),
    ("O3", "P1", 1, "2024-01-20 10:00", 10.00, "c1", "home"),
    # c2: a cancellation of 10.00 on a day with 6.00 of purchases: the order goes, 4.00 stays a refund;
    # another cancellation on a day without purchases is a refund of its own
    ("O4", "P5", 3, "2024-02-01 09:00", 2.00, "c2", "garden"),
    ("C2", "P5", -5, "2024-02-01 10:00", 2.00, "c2", "garden"),
    ("C3", "P5", -1, "2024-02-10 10:00", 2.00, "c2", "garden"),
    # c3: an order of free items only (net 0: left out), then a real one; a line without customer
    ("O5", "P7", 1, "2024-03-01 10:00", 0.00, "c3", "home"),
    ("O6", "P7", 2, "2024-03-02 10:00", 1.25, "c3", "home"),
    ("O7", "P7", 2, "2024-03-03 10:00", 1.25, None, "home"),
]


def test_hand_built_lines_give_exact_orders_and_counts():
    ds = load_dataset(line_config(), {"transactions": lines_frame(HAND_BUILT)})
    assert orders_of(ds) == [
        ("c1", "O1", "2024-01-05 08:00:00", 20.0, 3.0, "home"),  # 25.50 - 5.50 left of the cancellation
        ("c1", "O3", "2024-01-20 10:00:00", 10.0, 1.0, "home"),
        ("c2", "C2", "2024-02-01 10:00:00", -4.0, -5.0, "garden"),
        ("c2", "C3", "2024-02-10 10:00:00", -2.0, -1.0, "garden"),
        ("c3", "O6", "2024-03-02 10:00:00", 2.5, 2.0, "home"),
    ]
    r = ds.report
    assert r.rows_in == {"transactions": 13} and r.rows_out == {"transactions": 11}
    assert r.dropped == {"transactions": {"null_id": 1, "duplicates": 1}}
    assert r.line_items["transactions"] == {
        "lines": 11, "orders_in": 9, "zero_orders": 1, "zero_order_lines": 1,
        "cancellation_orders": 3, "cancellation_lines": 4, "cancellation_lines_matched": 3,
        "cancellations_netted": 1,
        "cancellation_lines_netted": 2, "cancellations_reduced": 1, "refund_orders": 2,
        "orders_cancelled": 2, "orders_cancelled_lines": 2, "orders_reduced": 1, "purchase_orders": 3,
        "orders": 5, "multi_category_orders": 1}
    found = {p.check: p for p in r.problems}
    assert found["cancellations_netted"].action == "aggregated"
    assert found["cancellations_netted"].message.startswith(
        "cancellation lines of 3 order(s) with a negative net amount, netted against the same customer's "
        "purchases of their day: 1 absorbed entirely (2 lines; 3 line(s) met the same product first), 2 "
        "purchase order(s) cancelled entirely "
        "(2 lines), 1 reduced; 2 kept as refund rows")
    assert found["zero_orders"].examples == [{"customer_id": "c3", "order_id": "O5",
                                              "ts": "2024-03-01T10:00:00", "amount": 0.0, "lines": 1}]
    assert r.summary()["line_items"]["transactions"]["orders"] == 5


def test_basket_counts_lines_or_products():
    # quantity (the default) is checked above; here one order of three lines, two of one product
    frame = lines_frame([("1", "P1", 2, "2024-01-05 08:00", 1.0, "c1", "home"),
                         ("1", "P1", 1, "2024-01-05 08:00", 1.5, "c1", "home"),
                         ("1", "P2", 1, "2024-01-05 08:00", 2.0, "c1", "toys")])
    for basket, size in (("lines", 3.0), ("products", 2.0)):
        ds = load_dataset(line_config(basket=basket), {"transactions": frame})
        assert orders_of(ds) == [("c1", "1", "2024-01-05 08:00:00", 5.5, size, "home")], basket


def test_unparseable_quantity_and_shared_order_ids_are_refused_naming_rows():
    rows = HAND_BUILT[:3] + [("O2", "P3", "two", "2024-01-05 12:00", 4.00, "c1", "home"),
                             ("O4", "P5", 3, "2024-02-01 09:00", 2.00, "c2", "garden"),
                             ("O4", "P6", 1, "2024-02-01 09:00", 2.00, "c9", "garden")]
    frame = lines_frame(rows).astype({"Quantity": str})
    with pytest.raises(DataValidationError) as exc:
        load_dataset(line_config(), {"transactions": frame})
    problems = {p.check: p for p in exc.value.report.problems}
    bad = problems["bad_quantity"]  # read once, although the expression reads it too
    assert bad.n_rows == 1 and bad.column == "quantity" and exc.value.exit_code == 3
    assert "non-numeric values in quantity (your column 'Quantity')" in bad.message
    assert bad.examples[0]["quantity"] == "two"
    assert not any("amount__" in p.check or "amount__" in (p.column or "") for p in problems.values())
    # the order check runs on the lines that pass: O4 names two customers
    frame = lines_frame(rows[:3] + rows[4:])
    with pytest.raises(DataValidationError) as exc:
        load_dataset(line_config(), {"transactions": frame})
    p = next(p for p in exc.value.report.problems if p.check == "order_customers")
    assert p.n_rows == 1 and p.examples == [{"order_id": "O4", "customers": 2}]


# --- the same world at order grain and at line grain -------------------------------------------------

def random_lines(seed: int = 5, n_customers: int = 40) -> pd.DataFrame:
    """Orders of 1-4 lines, some with a second category; cancellations on days with and without
    purchases, some larger than the day's purchases; free orders."""
    rng = np.random.default_rng(seed)
    rows, k = [], 0
    start = dt.datetime(2023, 1, 1)
    for c in range(n_customers):
        days = sorted(rng.choice(330, size=int(rng.integers(1, 9)), replace=False))
        for d in days:
            for _ in range(int(rng.integers(1, 3))):  # one or two orders that day
                k += 1
                ts = start + dt.timedelta(days=int(d), minutes=int(rng.integers(0, 24 * 60)))
                cat, channel = str(rng.choice(["home", "toys", "garden"])), str(rng.choice(["web", "store"]))
                free = rng.random() < 0.05
                for _ in range(int(rng.integers(1, 5))):
                    line_cat = cat if rng.random() < 0.8 else str(rng.choice(["home", "toys", "garden"]))
                    rows.append((f"{k:06d}", f"P{int(rng.integers(20))}", int(rng.integers(1, 6)), ts,
                                 0.0 if free else int(rng.integers(50, 5000)) / 100, f"cust{c:03d}",
                                 line_cat, channel))
            if rng.random() < 0.35:  # a cancellation, that day or a few days later
                k += 1
                ts = start + dt.timedelta(days=int(d + rng.choice([0, 0, 3])),
                                          minutes=int(rng.integers(0, 24 * 60)))
                rows.append((f"C{k:06d}", f"P{int(rng.integers(20))}", -int(rng.integers(1, 8)), ts,
                             int(rng.integers(50, 5000)) / 100, f"cust{c:03d}", "home", "web"))
    return pd.DataFrame(rows, columns=["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice",
                                       "CustomerID", "Cat", "Channel"])


def consume(items: list[tuple], budget: int) -> dict:
    """Take ``budget`` off the magnitudes of ``items`` ((sort key, id, magnitude)), latest first."""
    left = {}
    for _key, ident, m in sorted(items, reverse=True):
        take = min(budget, m)
        budget -= take
        left[ident] = m - take
    return left


def net(rows: dict, group_of) -> dict:
    """rows: id -> (sort key, signed units); returns id -> signed units left after netting in groups."""
    groups: dict = defaultdict(list)
    for ident, (key, u) in rows.items():
        groups[group_of(ident)].append((key, ident, u))
    out = {}
    for items in groups.values():
        pos = [(k, i, u) for k, i, u in items if u > 0]
        neg = [(k, i, -u) for k, i, u in items if u < 0]
        budget = min(sum(m for *_, m in pos), sum(m for *_, m in neg))
        out |= consume(pos, budget) | {i: -m for i, m in consume(neg, budget).items()}
        out |= {i: 0 for k, i, u in items if u == 0}
    return out


def reference_orders(lines: pd.DataFrame) -> pd.DataFrame:
    """The documented rules written again in plain Python: what a user aggregating by hand would give
    at order grain."""
    lines = lines.assign(u=[round(q * p * 10**6) for q, p in zip(lines.Quantity, lines.UnitPrice, strict=True)])
    total = lines.groupby(["CustomerID", "InvoiceNo"]).u.transform("sum")
    live = lines.u.where(total != 0, 0)
    # 1. per customer, day and product
    rows = {i: ((r.InvoiceDate, r.InvoiceNo, abs(live[i])), live[i]) for i, r in lines.iterrows()}
    left = net(rows, lambda i: (lines.CustomerID[i], lines.InvoiceDate[i].date(), lines.StockCode[i]))
    lines = lines.assign(u1=pd.Series(left))
    orders = []
    for (c, oid), g in lines.groupby(["CustomerID", "InvoiceNo"]):
        cats = g.groupby("Cat").u.sum().sort_index()
        chans = g.groupby("Channel").size().sort_index()
        orders.append({"customer_id": c, "order_id": oid, "ts": g.InvoiceDate.min(), "u0": g.u.sum(),
                       "u1": g.u1.sum(), "quantity": float(g.Quantity.sum()),
                       "category": cats.idxmax(), "channel": chans.idxmax()})
    # 2. per customer and day, orders
    rows = {k: ((o["ts"], o["order_id"], abs(o["u1"])), o["u1"]) for k, o in enumerate(orders)}
    left = net(rows, lambda k: (orders[k]["customer_id"], orders[k]["ts"].date()))
    out = [o | {"amount": left[k] / 10**6} for k, o in enumerate(orders) if left[k] != 0]
    return pd.DataFrame(out).drop(columns=["u0", "u1"])


def test_order_grain_and_line_grain_give_identical_features():
    lines = random_lines()
    cfg = line_config(columns=LINE_COLUMNS | {"channel": "Channel"})
    by_lines = load_dataset(cfg, {"transactions": lines})
    expected = reference_orders(lines)
    li = by_lines.report.line_items["transactions"]
    # the world exercises every rule
    assert min(li["zero_orders"], li["cancellations_netted"], li["orders_cancelled"], li["orders_reduced"],
               li["cancellations_reduced"], li["refund_orders"], li["multi_category_orders"]) > 0, li
    got = by_lines["transactions"].to_pandas()
    keys = ["customer_id", "order_id"]
    pd.testing.assert_frame_equal(got.sort_values(keys).reset_index(drop=True),
                                  expected.sort_values(keys).reset_index(drop=True)[got.columns],
                                  check_exact=True, check_dtype=False)
    by_orders = load_dataset(frames={"transactions": expected})
    cuts = ["2023-04-01", "2023-08-01", "2023-11-01"]
    a = to_pandas(build_features(by_lines.tables, cuts))
    b = to_pandas(build_features(by_orders.tables, cuts))
    assert {"tx_basket_size", "tx_categories_all", "tx_refunds_all", "tx_channels_all"} <= set(a.columns)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


# --- the UCI Online Retail shape, end to end ---------------------------------------------------------

UCI = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom
536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom
536366,22633,"HAND WARMER UNION JACK, RED",6,12/1/2010 8:28,1.85,17850,United Kingdom
C536379,71053,WHITE METAL LANTERN,-6,12/1/2010 9:41,3.39,17850,United Kingdom
536370,22728,ALARM CLOCK BAKELIKE PINK,24,12/1/2010 8:45,3.75,12583,France
536370,POST,POSTAGE,3,12/1/2010 8:45,18,12583,France
536414,22139,,56,12/1/2010 11:52,0,,United Kingdom
540001,22728,ALARM CLOCK BAKELIKE PINK,12,1/4/2011 10:00,3.75,12583,France
C540100,22728,ALARM CLOCK BAKELIKE PINK,-2,1/6/2011 12:00,3.75,12583,France
550001,85123A,WHITE HANGING HEART T-LIGHT HOLDER,12,4/14/2011 9:00,2.55,17850,United Kingdom
550002,85123A,WHITE HANGING HEART T-LIGHT HOLDER,1,4/14/2011 9:00,2.55,13047,United Kingdom
"""


def test_uci_shaped_export_end_to_end(tmp_path):
    (tmp_path / "online_retail.csv").write_text(UCI)
    cfg = {"data": {"as_of": "2011-12-09",
                    "tables": {"transactions": {
                        "path": "online_retail.csv", "grain": "line", "amount": "Quantity * UnitPrice",
                        "product": "StockCode", "basket": "products", "timestamp_format": "%m/%d/%Y %H:%M",
                        "columns": {"customer_id": "CustomerID", "ts": "InvoiceDate", "order_id": "InvoiceNo"}}},
                    "observed_until": "2011-12-09",
                    "policies": {"null_keys": "drop"}},
           "cutoffs": {"start": "2011-01-01"}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "11 rows in, 10 kept" in out and "10 lines -> 7 orders (6 purchases, 1 refunds" in out
    assert "transactions.customer_id: null customer_id (your column 'CustomerID') — 1 row(s) [dropped by policy]" in out
    said: list[str] = []
    ds = load_data(load_config(path), said.append)
    assert any(s.startswith("warning: transactions.amount: cancellation lines of 2 order(s)")
               and "grouped into orders" in s for s in said), said
    f = to_pandas(build_features(ds.tables, ["2011-01-05", "2011-05-01"])).set_index(["customer_id", "cutoff"])
    jan = f.loc[("12583", pd.Timestamp("2011-01-05"))]
    assert (jan.tx_orders_all, jan.tx_spend_all, jan.tx_basket_size) == (2, 144.0 + 45.0, 1.5)
    may = f.loc[("12583", pd.Timestamp("2011-05-01"))]
    assert (may.tx_refunds_all, may.tx_refund_amount_all) == (1, 7.5)
    # the cancelled lantern meets the lantern of 8:26: 15.30 of that order and 8:28's 11.10 remain
    c = f.loc[("17850", pd.Timestamp("2011-01-05"))]
    assert (c.tx_orders_all, c.tx_spend_all, c.tx_refunds_all) == (2, 11.1 + 15.3, 0)


# --- CSV number formats ------------------------------------------------------------------------------

def read_csv_amounts(tmp_path, text: str, **kw) -> list[float]:
    (tmp_path / "tx.csv").write_text(text)
    cfg = DataConfig.model_validate({"tables": {"transactions": {"path": str(tmp_path / "tx.csv"), **kw}}})
    return load_dataset(cfg)["transactions"].to_pandas().sort_values("customer_id").amount.tolist()


def test_decimal_comma_and_point_thousands(tmp_path):
    text = 'customer_id;ts;amount\na;2024-01-01;1.738,20\nb;2024-01-02;-12,5\nc;2024-01-03;3\nd;2024-01-04;1.234.567,5\n'
    assert read_csv_amounts(tmp_path, text, thousands=".", decimal=",") == [1738.2, -12.5, 3.0, 1234567.5]
    text = 'customer_id;ts;amount\na;2024-01-01;1 738,20\nb;2024-01-02;-12,5\n'
    assert read_csv_amounts(tmp_path, text, thousands=" ", decimal=",") == [1738.2, -12.5]


def test_comma_thousands(tmp_path):
    text = 'customer_id,ts,amount\na,2024-01-01,"1,738.20"\nb,2024-01-02,12.5\nc,2024-01-03," 1,000 "\n'
    assert read_csv_amounts(tmp_path, text, thousands=",") == [1738.2, 12.5, 1000.0]


def test_misplaced_separators_are_not_numbers(tmp_path):
    text = 'customer_id,ts,amount\na,2024-01-01,"17,38.20"\nb,2024-01-02,"1.5"\nc,2024-01-03,3\n'
    with pytest.raises(DataValidationError) as exc:
        read_csv_amounts(tmp_path, text, thousands=",")
    p = next(p for p in exc.value.report.problems if p.check == "bad_amount")
    assert p.n_rows == 1 and p.examples[0]["amount"] == "17,38.20"
    assert p.fix == "clean the column so it holds numbers written with thousands: ',' and decimal: '.' only"
    with pytest.raises(DataValidationError) as exc:  # in a decimal-comma file, 1.5 is not a number
        read_csv_amounts(tmp_path, text.replace('"17,38.20"', "2"), decimal=",")
    assert next(p for p in exc.value.report.problems if p.check == "bad_amount").examples[0]["amount"] == "1.5"


@pytest.mark.parametrize("value, says", [
    ("1,738.20", "'1,738.20' looks like a number with thousands separators: set "
                 "data.tables.transactions.thousands: ','"),
    ("1.738,20", "'1.738,20' looks like a number with a decimal comma and '.' between thousands: set "
                 "data.tables.transactions.thousands: '.' and data.tables.transactions.decimal: ','"),
    ("12,5", "'12,5' looks like a number with a decimal comma: set data.tables.transactions.decimal: ','"),
    ("1,738", "'1,738' looks like a number in a local format: with a thousands separator set "
              "data.tables.transactions.thousands: ','; with a decimal comma set "
              "data.tables.transactions.decimal: ','"),
    ("12 EUR", "clean the column so it holds numbers only"),
])
def test_non_numeric_amount_suggests_the_number_format(tmp_path, value, says):
    with pytest.raises(DataValidationError) as exc:
        read_csv_amounts(tmp_path, f'customer_id,ts,amount\na,2024-01-01,"{value}"\n')
    p = next(p for p in exc.value.report.problems if p.check == "bad_amount")
    assert p.message == "non-numeric values in amount" and p.fix == says


def test_number_format_applies_to_the_amount_expression_columns(tmp_path):
    text = ("InvoiceNo;StockCode;Quantity;InvoiceDate;UnitPrice;CustomerID;Cat\n"
            "1;A;2;2024-01-05 08:00;1.738,20;c1;home\n1;B;1;2024-01-05 08:00;0,5;c1;home\n")
    (tmp_path / "lines.csv").write_text(text)
    cfg = line_config(path=str(tmp_path / "lines.csv"), thousands=".", decimal=",")
    assert orders_of(load_dataset(cfg)) == [("c1", "1", "2024-01-05 08:00:00", 3476.9, 3.0, "home")]
    cfg = line_config(path=str(tmp_path / "lines.csv"))
    with pytest.raises(DataValidationError) as exc:
        load_dataset(cfg)
    p = next(p for p in exc.value.report.problems if p.check == "bad_UnitPrice")
    assert p.column == "UnitPrice" and p.message == "non-numeric values in UnitPrice (in the amount expression)"
    assert p.n_rows == 2 and p.fix == (  # the most telling value of the column decides
        "'1.738,20' looks like a number with a decimal comma and '.' between thousands: set "
        "data.tables.transactions.thousands: '.' and data.tables.transactions.decimal: ','")
    assert set(p.examples[0]) == {"customer_id", "ts", "order_id", "quantity", "category", "UnitPrice", "product"}
