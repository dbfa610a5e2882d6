"""Canonical schemas of the five input tables.

Only ``transactions`` is required. Users map their own column names (and event-type vocabularies) onto
these canonical names in the config (``data.tables.<table>.columns`` / ``.event_types``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

#: supported timestamps: [TS_START, TS_END). Cut-offs, labels and scores pass through pandas
#: nanosecond timestamps, which end at 2262-04-11 23:47:16; the cut-off after the last event day must
#: fit, so events end the day before. Earlier than 1900 is a placeholder, not an event.
TS_START = dt.datetime(1900, 1, 1)
TS_END = dt.datetime(2262, 4, 11)
#: supported magnitude of every number column (amounts in currency units): sums are exact integers of
#: 1e-6 units in 64 bits (±9.2e18), so one value may be at most 9.2e12; squares for spreads are 128-bit
NUMBER_BOUND = 1e12

Kind = Literal["id", "timestamp", "number", "string", "event_type"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    event_types: tuple[str, ...] = ()
    has_ts: bool = True
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


_ID = Column("customer_id", "id", True, "Customer key (string or integer).")
_TS = Column("ts", "timestamp", True, "Event time; timezone-aware inputs are normalised to UTC.")

CUSTOMERS = TableSchema(
    "customers",
    (
        _ID,
        Column("signup_ts", "timestamp", False, "Sign-up time."),
        Column("acquisition_channel", "string", False, "How the customer was acquired."),
        Column("membership_tier", "string", False, "Loyalty/membership tier."),
        Column("region", "string", False, "Region."),
        Column("birth_year", "number", False, "Year of birth."),
    ),
    has_ts=False,
    description="Static customer profile, one row per customer.",
)

TRANSACTIONS = TableSchema(
    "transactions",
    (
        _ID,
        _TS,
        Column("amount", "number", True, "Order value; negative means a refund/return."),
        Column("order_id", "string", False, "Order key."),
        Column("quantity", "number", False, "Items in the order."),
        Column("category", "string", False, "Product category."),
        Column("channel", "string", False, "Sales channel (web, app, store…)."),
        Column("discount", "number", False, "Discount amount granted on the order."),
        Column("margin", "number", False, "Gross margin of the order."),
    ),
    description="Orders and refunds.",
)

ACTIVITY = TableSchema(
    "activity",
    (
        _ID,
        _TS,
        Column("event_type", "event_type", True, "What happened."),
        Column("duration_s", "number", False, "Session duration in seconds."),
    ),
    event_types=("login", "session", "page_view", "add_to_cart", "account_closed"),
    description="Digital engagement events.",
)

SOCIAL = TableSchema(
    "social",
    (
        _ID,
        _TS,
        Column("event_type", "event_type", True, "What happened."),
        Column("rating", "number", False, "Rating given with a review (1-5)."),
    ),
    event_types=("share", "referral", "referral_converted", "review", "like"),
    description="Social and advocacy events.",
)

AFTER_SALES = TableSchema(
    "after_sales",
    (
        _ID,
        _TS,
        Column("event_type", "event_type", True, "What happened."),
        Column("resolved_ts", "timestamp", False, "When a ticket/complaint was resolved (null: open)."),
        Column("satisfaction", "number", False, "Survey satisfaction, 1-5."),
        Column("nps", "number", False, "Net-promoter answer, 0-10."),
        Column("amount", "number", False, "Refund/return amount."),
    ),
    event_types=("ticket", "complaint", "return", "refund", "survey"),
    description="Support, returns and surveys.",
)

SCHEMAS: dict[str, TableSchema] = {
    s.name: s for s in (CUSTOMERS, TRANSACTIONS, ACTIVITY, SOCIAL, AFTER_SALES)
}
HISTORY_TABLES = ("transactions", "activity", "social", "after_sales")
