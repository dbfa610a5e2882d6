"""The ``data`` section: table sources, the synthetic world, bad-value policies."""

from __future__ import annotations

import datetime as dt
import difflib
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_serializer, field_validator, model_validator

from clvml.config.base import _check_identifier, _Strict
from clvml.config.database import backend_of, check_read_only_query, redact_url
from clvml.config.expression import parse


class TableSource(_Strict):
    """Where one table comes from and how its columns map onto the canonical schema."""

    # a URL may hold a password: pydantic's own error text must not quote it
    model_config = ConfigDict(**_Strict.model_config, hide_input_in_errors=True)

    path: Path | None = Field(None, description="Parquet/CSV file or folder, or DuckDB database file.")
    format: Literal["parquet", "csv", "duckdb"] | None = Field(
        None, description="Inferred from the file suffix when omitted."
    )
    table: str | None = Field(None, description="Table name inside a DuckDB database file, or in the "
                              "database of url.")
    url: str | None = Field(None, description="Read the table from a database Ibis connects to "
                            "(postgres://user:${PGPASSWORD}@host:5432/db, sqlite:///shop.db, …) instead of "
                            "a file; give table: or query:. ${NAME} is read from the environment when "
                            "connecting; the password is masked wherever the URL is shown.")
    query: str | None = Field(None, description="With url: one read-only SELECT (or WITH … SELECT) whose "
                              "result is the table; it runs in the database.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="canonical column name -> column name in your data."
    )
    event_types: dict[str, list[str]] = Field(
        default_factory=dict, description="canonical event type -> your values that mean it."
    )
    encoding: Literal["utf-8", "utf-16", "latin-1"] | None = Field(
        None, description="Text encoding of CSV files: utf-8 (the default), utf-16 (also detected from "
        "a byte-order mark, as Excel's 'Unicode text' writes) or latin-1 (also for Windows-1252 exports).")
    timestamp_format: str | None = Field(
        None, description="strptime format (e.g. '%m/%d/%Y') of every text timestamp column of the "
        "table; without it only ISO 8601, year/month/day and day/month forms whose order a day above "
        "12 proves are read.")
    grain: Literal["order", "line"] = Field(
        "order", description="transactions only: 'order' (one row per order) or 'line' (one row per order "
        "line: lines are grouped into orders by order_id, cancellations netted; docs/line-items.md).")
    amount: str | None = Field(
        None, description="The amount as arithmetic over your column names (e.g. 'Quantity * UnitPrice'): "
        "names, numbers, + - * / and parentheses. Instead of mapping columns.amount.")
    product: str | None = Field(
        None, description="grain: line — your product column (e.g. StockCode), for basket: products.")
    basket: Literal["quantity", "lines", "products"] | None = Field(
        None, description="grain: line — what an order's quantity (basket size) counts: the sum of its "
        "lines' quantities (default when a quantity column exists), its lines, or its distinct products.")
    thousands: Literal[",", ".", " ", "'", "_"] | None = Field(
        None, description="Thousands separator of text numbers (CSV), e.g. ',' for 1,738.20.")
    decimal: Literal[".", ","] | None = Field(
        None, description="Decimal mark of text numbers (CSV), e.g. ',' for 1.738,20 (with thousands: '.').")

    @field_validator("amount")
    @classmethod
    def _amount_expression(cls, v: str | None) -> str | None:
        if v is None:
            return v
        expr = parse(v)  # ValueError names the position
        if not expr.columns:
            raise ValueError(f"amount expression {v!r} reads no column; write it over your columns, e.g. "
                             "'Quantity * UnitPrice'")
        return v

    @field_validator("product")
    @classmethod
    def _product_ident(cls, v: str | None) -> str | None:
        return None if v is None else _check_identifier(v, "column")

    @model_validator(mode="after")
    def _line_options(self) -> TableSource:
        if self.amount is not None and "amount" in self.columns:
            raise ValueError(f"both amount: {self.amount!r} and columns.amount: {self.columns['amount']!r} "
                             "are set; keep one (the expression computes the amount from your columns)")
        if self.grain == "order":
            given = [k for k in ("product", "basket") if getattr(self, k) is not None]
            if given:
                verb = "apply" if len(given) > 1 else "applies"
                raise ValueError(f"{' and '.join(given)} {verb} to line items only: set grain: line, or "
                                 "remove them")
        if self.basket == "products" and self.product is None:
            raise ValueError("basket: products counts distinct products: set product: <your product column>")
        if self.thousands is not None and self.thousands == (self.decimal or "."):
            raise ValueError(f"thousands {self.thousands!r} and decimal {self.decimal or '.'!r} are the same "
                             "character" + (" (the decimal mark is '.' unless decimal is set)"
                                            if self.decimal is None else "")
                             + ": for 1.738,20 set thousands: '.' and decimal: ','")
        return self

    @field_validator("table")
    @classmethod
    def _table_ident(cls, v: str | None) -> str | None:
        return None if v is None else _check_identifier(v, "table name")

    @field_serializer("url", when_used="json")
    def _mask_url(self, v: str | None) -> str | None:  # logs, MLflow params, manifests: no password
        return None if v is None else redact_url(v)

    @model_validator(mode="after")
    def _one_source(self) -> TableSource:
        if self.url is None:
            if self.query is not None:
                raise ValueError("query: needs url: (the database it runs in)")
            return self
        where = redact_url(self.url)
        if "://" not in self.url:
            raise ValueError(f"url {where!r} is not a database URL (scheme://…, e.g. postgres://user@host/db "
                             "or sqlite:///path/to/file.db); a file goes in path:")
        if self.path is not None or self.format is not None:
            raise ValueError(f"give either path: (a file) or url: (a database), not both (url {where!r})")
        if self.encoding is not None:
            raise ValueError(f"encoding: is for CSV files; a database (url {where!r}) gives text decoded")
        if (self.table is None) == (self.query is None):
            raise ValueError(f"url {where!r}: give exactly one of table: (a table or view name) or query: "
                             "(one read-only SELECT)")
        if self.query is not None:
            try:
                check_read_only_query(self.query, backend_of(self.url))
            except ValueError as exc:
                raise ValueError(f"query: {exc}") from None
        return self

    @field_validator("columns")
    @classmethod
    def _columns_ident(cls, v: dict[str, str]) -> dict[str, str]:
        for canonical, user in v.items():
            _check_identifier(canonical, "canonical column")
            _check_identifier(user, "column")
        return v


class CampaignSpec(_Strict):
    """A randomised incentive in the synthetic world (:class:`clvml.datasets.synthetic.Campaign`)."""

    date: dt.date
    campaign_id: str = "retention-1"
    window_days: int = Field(30, gt=0)
    treat_share: float = Field(0.5, gt=0, lt=1)
    lift: float = Field(2.0, ge=0, description="Lift of the daily purchase probability (lapsed buyers).")
    recent_days: int = Field(60, gt=0)
    recent_factor: float = Field(0.15, ge=0)
    gold_factor: float = Field(0.25, ge=0)
    seed: int = 1


class SyntheticConfig(_Strict):
    """Generate a synthetic world into ``path`` before reading it (the demo's data)."""

    n_customers: int = Field(20_000, gt=0)
    start: dt.date = dt.date(2023, 1, 1)
    end: dt.date = dt.date(2024, 12, 31)
    seed: int = 7
    path: Path = Path("data/synthetic")
    truth_horizon_days: int = Field(90, gt=0)
    truth_every_days: int = Field(30, gt=0)
    campaigns: list[CampaignSpec] = Field(default_factory=list, description="Randomised incentives; "
                                          "their assignments are written to <path>/assignments.parquet.")


class Policies(_Strict):
    """What to do with rows that break a rule. ``error`` stops; ``drop`` removes and counts them."""

    duplicates: Literal["error", "drop"] = "error"
    future_events: Literal["error", "drop"] = "error"
    unknown_event_types: Literal["error", "drop"] = "error"
    orphan_customers: Literal["error", "drop", "keep"] = "error"
    null_keys: Literal["error", "drop"] = "error"


TABLE_NAMES = ("customers", "transactions", "activity", "social", "after_sales")


class DataConfig(_Strict):
    as_of: dt.datetime | None = Field(
        None, description="Data snapshot time: events at or after it are errors (or dropped)."
    )
    observed_until: dt.date | None = Field(
        None, description="Last day (inclusive) the data are known to be complete. Labels may use "
        "horizons up to it. Default: the last transaction day, so that a stale export never turns "
        "the missing days into churn. Set it only when a quiet period after the last event is real.")
    strict: bool = Field(False, description="Refuse any dropped row (exit 3) instead of dropping it under "
                         "a drop policy; the CLI's --strict sets it.")
    stale_after_days: int = Field(
        7, ge=0, description="A gap between the last transaction and data.as_of longer than this is "
        "reported by validation (a stale export?).")
    synthetic: SyntheticConfig | None = None
    tables: dict[str, TableSource] = Field(default_factory=dict)
    policies: Policies = Field(default_factory=Policies)

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, v: dict[str, TableSource]) -> dict[str, TableSource]:
        unknown = [k for k in v if k not in TABLE_NAMES]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, TABLE_NAMES, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown table(s) {', '.join(hints)}; known: {', '.join(TABLE_NAMES)}")
        lines = [k for k, t in v.items() if t.grain == "line" and k != "transactions"]
        if lines:
            raise ValueError(f"grain: line is for the transactions table only (set on {', '.join(lines)})")
        return v

    @model_validator(mode="after")
    def _observed_until_before_as_of(self) -> DataConfig:
        if self.observed_until is not None and self.as_of is not None and (
                dt.datetime.combine(self.observed_until, dt.time()) > self.as_of):
            raise ValueError(f"observed_until {self.observed_until} is after as_of {self.as_of:%Y-%m-%d}: "
                             "the data cannot be complete past the snapshot time")
        return self

    @model_validator(mode="after")
    def _need_transactions(self) -> DataConfig:
        if self.synthetic is None and "transactions" not in self.tables:
            raise ValueError(
                "no transactions table: add data.tables.transactions (it is the one required table) "
                "or data.synthetic to generate a world"
            )
        return self
