"""A synthetic customer world with a documented causal story and exact ground truth.

Causal story
------------
Each customer arrives on a sign-up day (uniform over the period) and buys on that day. Latent traits:

* ``engagement`` e (log-normal): scales browsing, sharing and referrals, raises the purchase rate and
  lowers the dropout hazard;
* ``purchase rate`` λ (gamma, per day while alive), scaled by engagement;
* ``spend level`` μ (log-normal): every order is Gamma(3, μ/3) dollars, mean exactly μ; high spenders are
  more likely to be silver/gold members;
* ``base dropout hazard`` h0 (gamma, per day), scaled by acquisition channel, membership tier and
  engagement;
* ``satisfaction`` s (normal): shifts survey answers, NPS and review ratings.

Each day, in this order, for every arrived customer who is still alive:

1. complaints and tickets due today are resolved; a resolution may come with a survey whose
   satisfaction becomes the customer's latest satisfaction;
2. the hazard is ``h0 · exp(0.8·open complaints + 0.25·open tickets + 0.6·[latest satisfaction ≤ 2]
   − 0.3·[latest satisfaction ≥ 4] − 0.25·min(referrals, 3))`` — complaints, unresolved tickets and
   poor satisfaction raise it; good support and referrals lower it;
3. the customer drops out (forever) with that probability;
4. otherwise buys with probability λ; a purchase day always starts with a browsing session, page views
   and an add-to-cart (activity precedes purchases). A purchase may trigger a ticket or complaint (a
   complaint stays unresolved with probability 0.3; slow resolutions get poor satisfaction), a
   referral, a review, an NPS survey, or a later return/refund.

Browsing, shares and likes follow engagement; after dropout browsing fades out. Region and birth
year have no effect on anything (useful as irrelevant features).

Ground truth
------------
For each requested cut-off day c (midnight) and every customer who arrived before c, the truth covers
the horizon of days [c, c + H):

* ``p_purchase``: probability of at least one purchase, computed exactly from the latent state (until
  the first purchase the hazard path is deterministic: it only changes when already-scheduled
  resolutions happen);
* ``expected_purchases`` and ``expected_spend`` (= μ · expected purchases): the effect of purchases on
  later hazard (complaints, referrals) is averaged over a few simulated paths with dropout integrated
  out analytically (Rao-Blackwellised), so the estimate has very little noise;
* ``alive`` at the cut-off;
* ``p_alive_observable``, ``p_purchase_observable``, ``expected_spend_observable``: the same truth for
  an observer who knows every customer's traits but, like the business, cannot see whether the
  customer has dropped out: P(alive | observable history) from :class:`AliveFilter`, times the truth
  of the customer if alive. It is the ceiling for models, which also have to estimate the traits.
* ``p_alive_rate_unknown``, ``p_purchase_rate_unknown``, ``expected_spend_rate_unknown`` (only at the
  cut-offs passed as ``rate_unknown_truth``): the same for an observer who knows every trait except
  the purchase rate, which it infers from the history (:class:`RateMixtureFilter`): a tighter
  ceiling, still above any model, which must infer the other traits too.
* ``expected_spend_long`` and ``expected_spend_long_observable`` (only at the cut-offs passed as
  ``long_truth``, NaN elsewhere; ``long_horizon_days`` is stored in the column ``long_horizon_days``):
  expected spend over ``[c, c + long_horizon_days)``, computed like ``expected_spend`` (oracle: knows
  who has dropped out) and like ``expected_spend_observable``: the oracle CLV of a long-horizon
  evaluation.

Campaigns (optional)
--------------------
A :class:`Campaign` is a randomised retention incentive on a date d: every customer who arrived before d
is assigned to treatment with probability ``treat_share`` (from its own random stream, so the rest of
the world is drawn identically), and a treated customer's daily purchase probability is multiplied by
``1 + tau`` on days [d, d + window). The effect is heterogeneous on things the business can see:
``tau = lift`` for customers whose last purchase was at least ``recent_days`` before d, ``lift ·
recent_factor`` for recent buyers, times ``gold_factor`` for gold members. The truth per assigned
customer (``SyntheticWorld.campaign_truth``) is computed like the cut-off truth, under both arms:
exact P(purchase in the window) and expected spend (common random paths for both arms). The regular
cut-off truth ignores campaigns.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CHANNELS = np.array(["organic", "paid_search", "social", "referral", "email"])
CHANNEL_P = np.array([0.35, 0.25, 0.15, 0.10, 0.15])
CHANNEL_HAZARD = np.array([1.0, 1.4, 1.2, 0.7, 0.9])
TIERS = np.array(["basic", "silver", "gold"])
TIER_HAZARD = np.array([1.0, 0.85, 0.7])
REGIONS = np.array(["north", "south", "east", "west"])
CATEGORIES = np.array(["music", "books", "electronics", "home", "fashion", "toys"])
CATEGORY_MARGIN = np.array([0.35, 0.30, 0.15, 0.25, 0.45, 0.30])
SALES_CHANNELS = np.array(["web", "app", "store"])
SLOTS = 4  # open tickets/complaints tracked per customer
EMPTY = -1  # a free slot
NEVER = 10**9  # a complaint that is never resolved / no resolution scheduled
P_CLOSE = 0.25  # a dropout closes the account (an activity event) with this probability
FADE = 0.3  # browsing right after dropout, relative to before ...
FADE_DAYS = 45.0  # ... then fading as exp(-days since dropout / FADE_DAYS)
# purchase rate: clip(Gamma(RATE_SHAPE, mean RATE_MEAN) * engagement**RATE_ENG, *RATE_CLIP) per day
RATE_SHAPE, RATE_MEAN, RATE_ENG, RATE_CLIP = 1.5, 1 / 45, 0.3, (0.001, 0.3)
RATE_NODES = 40  # grid nodes over the purchase rate of the rate-unknown truth (RateMixtureFilter)


def daily_rates(eng: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily probabilities of browsing (without buying), sharing and liking of an alive customer."""
    return np.minimum(0.025 * eng, 0.6), np.minimum(0.004 * eng, 0.2), np.minimum(0.006 * eng, 0.2)


@dataclass
class SyntheticWorld:
    """The generated tables (canonical column names) and the ground truth per customer and cut-off."""

    customers: pd.DataFrame
    transactions: pd.DataFrame
    activity: pd.DataFrame
    social: pd.DataFrame
    after_sales: pd.DataFrame
    truth: pd.DataFrame
    params: dict = field(default_factory=dict)
    assignments: pd.DataFrame | None = None
    traits: pd.DataFrame | None = None  # latent traits per customer (diagnostics only)
    campaign_truth: pd.DataFrame | None = None

    TABLES = ("customers", "transactions", "activity", "social", "after_sales")

    def tables(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in self.TABLES}

    def write(self, path: str | Path) -> Path:
        """Write every table and the truth (and campaigns, if any) as Parquet files into ``path``
        (atomically per file)."""
        from clvml.io import atomic_write_parquet

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        extra = {k: getattr(self, k) for k in ("assignments", "campaign_truth", "traits")
                 if getattr(self, k) is not None}
        for name, df in {**self.tables(), "truth": self.truth, **extra}.items():
            atomic_write_parquet(df, path / f"{name}.parquet")
        return path


@dataclass(frozen=True)
class Campaign:
    """A randomised retention incentive in the synthetic world (see the module docstring).

    Parameters
    ----------
    date
        Assignment date d; the incentive acts on days [d, d + window_days).
    lift
        Multiplicative lift of the daily purchase probability for a lapsed, non-gold customer.
    recent_days, recent_factor
        Customers who bought within ``recent_days`` before d get ``lift · recent_factor``.
    gold_factor
        Multiplier of the lift for gold members.
    """

    date: dt.date | str = "2024-09-01"
    campaign_id: str = "retention-1"
    window_days: int = 30
    treat_share: float = 0.5
    lift: float = 2.0
    recent_days: int = 60
    recent_factor: float = 0.15
    gold_factor: float = 0.25
    seed: int = 1

    def effect(self, days_since_last: np.ndarray, tier: np.ndarray) -> np.ndarray:
        """True lift ``tau`` per customer from days since the last purchase and tier code (2 = gold)."""
        lapsed = days_since_last >= self.recent_days
        return (self.lift * np.where(lapsed, 1.0, self.recent_factor)
                * np.where(tier == 2, self.gold_factor, 1.0))


class _State:
    """Hazard-relevant state of a set of customers (arrays of equal length).

    ``open_w`` (weighted count of open tickets/complaints) and ``next_due`` (earliest scheduled
    resolution) are kept up to date incrementally so a day costs O(customers), not O(slots).
    """

    FIELDS = ("lam", "h0", "alive", "refs", "last_sat", "slot_due", "slot_sat", "slot_survey",
              "slot_w", "open_w", "next_due")

    def __init__(self, **arrays):
        for k in self.FIELDS:
            setattr(self, k, arrays[k])

    @classmethod
    def new(cls, lam: np.ndarray, h0: np.ndarray) -> _State:
        n = lam.size
        return cls(lam=lam, h0=h0, alive=np.ones(n, bool), refs=np.zeros(n, np.int64),
                   last_sat=np.zeros(n), slot_due=np.full((n, SLOTS), EMPTY, np.int64),
                   slot_sat=np.zeros((n, SLOTS)), slot_survey=np.zeros((n, SLOTS), bool),
                   slot_w=np.zeros((n, SLOTS)), open_w=np.zeros(n),
                   next_due=np.full(n, NEVER, np.int64))

    def take(self, idx: np.ndarray) -> _State:
        return _State(**{k: getattr(self, k)[idx].copy() for k in self.FIELDS})

    def resolve(self, t: int) -> None:
        """Resolve slots due on day ``t``; a resolution with a survey sets the latest satisfaction."""
        rows = np.nonzero(self.next_due == t)[0]
        if rows.size == 0:
            return
        due = self.slot_due[rows] == t
        r, sl = np.nonzero(due & self.slot_survey[rows])
        self.last_sat[rows[r]] = self.slot_sat[rows[r], sl]
        w = self.slot_w[rows]
        self.open_w[rows] -= np.where(due, w, 0.0).sum(axis=1)
        w[due] = 0.0
        self.slot_w[rows] = w
        d = self.slot_due[rows]
        d[due] = EMPTY
        self.slot_due[rows] = d
        self.next_due[rows] = np.where(d > t, d, NEVER).min(axis=1)

    def hazard(self) -> np.ndarray:
        poor = (self.last_sat >= 1) & (self.last_sat <= 2)  # 0 means no survey yet
        good = self.last_sat >= 4
        x = self.open_w + 0.6 * poor - 0.3 * good - 0.25 * np.minimum(self.refs, 3)
        return np.minimum(self.h0 * np.exp(x), 0.5)

    def add_slot(self, rows: np.ndarray, due: np.ndarray, sat: np.ndarray, survey: np.ndarray,
                 w: np.ndarray) -> None:
        if rows.size == 0:
            return
        free = self.slot_due[rows] == EMPTY
        has = free.any(axis=1)
        slot = free.argmax(axis=1)
        r, s = rows[has], slot[has]
        self.slot_due[r, s] = due[has]
        self.slot_sat[r, s] = sat[has]
        self.slot_survey[r, s] = survey[has]
        self.slot_w[r, s] = w[has]
        np.add.at(self.open_w, r, w[has])
        np.minimum.at(self.next_due, r, due[has])


class AliveFilter:
    """Exact Bayesian filter of "still alive?" from what the business can observe, knowing the traits.

    The world's truth conditions on the hidden alive flag, which no model can see. This filter gives
    the best any model could do with the observable history *and* each customer's true traits
    (rates, hazard path, engagement): the posterior P(alive | purchases, browsing, shares, likes,
    account closures) under the generative model. Hidden state: the day of dropout. Dropout days
    more than ``memory`` days back share one bucket whose post-dropout browsing probability is
    taken at age ``memory`` (exp(-memory/45) ≈ 0.5 %: negligible).

    Cost per day is O(customers): a dropped-out customer's daily "no browsing" factor depends only
    on the age of the dropout, so the weights are stored net of the cumulative factor ``F(age)``
    and only the rows that browsed or did something else that day are touched.
    """

    def __init__(self, eng: np.ndarray, memory: int = 240):
        n = eng.size
        self.p_browse, self.p_share, self.p_like = daily_rates(eng)
        self.memory = memory
        self.decay = FADE * np.exp(-np.arange(memory + 1) / FADE_DAYS)  # post-dropout browsing
        c = self.p_browse[:, None] * self.decay[None, :]
        c[:, 0] = 0.0
        self.cum = np.exp(np.cumsum(np.log1p(-c), axis=1))  # F(age): no browsing on days 1..age
        self.p_old = self.p_browse * self.decay[-1]
        self.alive = np.zeros(n)  # P(alive, history) up to a per-customer constant
        self.dead = np.zeros((n, memory))  # dropout day d at column d % memory, net of F(age)
        self.old = np.zeros(n)  # dropped out more than `memory` days ago
        self.log_scale = np.zeros(n)  # log of the normalising constants divided out so far
        self.t = -1

    def _ages(self) -> np.ndarray:
        return (self.t - np.arange(self.memory)) % self.memory

    def update(self, t: int, new: np.ndarray, arrived: np.ndarray, h: np.ndarray, lam: np.ndarray,
               buy: np.ndarray, closed: np.ndarray, browse: np.ndarray, share: np.ndarray,
               like: np.ndarray) -> None:
        """Fold in day ``t``'s observations (arrays over all customers; ``lam`` is today's purchase
        probability of an alive customer, 1 on the arrival day)."""
        self.t, k, pb = t, self.memory, self.p_browse
        self.alive[new] = 1.0
        silent = ~buy & ~share & ~like & ~closed  # all a dropped-out customer can show
        survive = ((1.0 - h) * ~closed
                   * np.where(buy, lam, (1.0 - lam) * np.where(browse, pb, 1.0 - pb))
                   * np.where(share, self.p_share, 1.0 - self.p_share)
                   * np.where(like, self.p_like, 1.0 - self.p_like))
        die = (h * np.where(closed, P_CLOSE, 1.0 - P_CLOSE) * (~buy & ~share & ~like)
               * np.where(browse, FADE * pb, 1.0 - FADE * pb))
        col = t % k
        self.old += self.dead[:, col] * self.cum[:, k]  # dropout day t - k leaves the window
        self.dead[:, col] = 0.0
        self.old *= np.where(browse, self.p_old, 1.0 - self.p_old) * silent
        rows = np.nonzero(browse)[0]
        if rows.size:  # replace the stored "no browsing today" factor by "browsing"
            c = pb[rows, None] * self.decay[None, self._ages()]
            self.dead[rows] *= c / (1.0 - c)
        rows = np.nonzero(~silent)[0]
        self.dead[rows] = 0.0
        self.dead[:, col] = self.alive * die
        self.alive = np.where(arrived, self.alive * survive, 0.0)
        if t % 32 == 0:
            self._normalize()

    def _normalize(self) -> None:
        dead = (self.dead * self.cum[:, self._ages()]).sum(axis=1)
        tot = self.alive + dead + self.old
        scale = np.where(tot > 0, 1.0 / np.where(tot > 0, tot, 1.0), 0.0)
        self.log_scale += np.log(np.where(tot > 0, tot, 1.0))
        self.alive *= scale
        self.dead *= scale[:, None]
        self.old *= scale

    def p_alive(self) -> np.ndarray:
        """P(alive at the end of the last folded-in day | observable history, traits)."""
        self._normalize()
        return self.alive.copy()

    def log_evidence(self) -> np.ndarray:
        """Log-probability of the observable history given the traits (up to a constant that does
        not depend on the purchase rate); 0 before a customer arrives."""
        self._normalize()
        return self.log_scale.copy()


def rate_grid(points: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid over the gamma part g of the purchase rate (λ = clip(g · engagement**RATE_ENG)) and the
    prior mass of each point: log-spaced nodes, each carrying the prior mass of its cell (cells meet
    halfway in log space; the first and last cells reach 0 and infinity)."""
    from scipy.stats import gamma

    prior = gamma(RATE_SHAPE, scale=RATE_MEAN / RATE_SHAPE)
    g = np.geomspace(RATE_CLIP[0] / 4, prior.ppf(1 - 1e-7), points)
    edges = np.sqrt(g[1:] * g[:-1])
    cdf = np.concatenate([[0.0], prior.cdf(edges), [1.0]])
    return g, np.diff(cdf)


class RateMixtureFilter:
    """:class:`AliveFilter` for an observer who knows every trait except the purchase rate.

    One filter per node of :func:`rate_grid`; each node's evidence (the likelihood of the observable
    history, purchases included) times its prior mass gives the posterior over the rate, jointly
    with P(alive) at each node. Memory and time are ``points`` times those of one filter.
    """

    def __init__(self, eng: np.ndarray, points: int = RATE_NODES, memory: int = 240):
        g, self.prior = rate_grid(points)
        self.lam = np.clip(g[None, :] * eng[:, None] ** RATE_ENG, *RATE_CLIP)  # (customers, nodes)
        self.filters = [AliveFilter(eng, memory) for _ in range(points)]

    def update(self, t: int, new: np.ndarray, arrived: np.ndarray, h: np.ndarray, lift: np.ndarray,
               buy: np.ndarray, closed: np.ndarray, browse: np.ndarray, share: np.ndarray,
               like: np.ndarray) -> None:
        """As :meth:`AliveFilter.update`, with ``lift`` the factor on today's purchase rate
        (campaigns; 1 otherwise) instead of the rate itself."""
        for j, f in enumerate(self.filters):
            lam = np.where(new, 1.0, np.minimum(self.lam[:, j] * lift, 1.0))
            f.update(t, new, arrived, h, lam, buy, closed, browse, share, like)

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior weight of each rate node and P(alive | node, history), both (customers, nodes)."""
        ll = np.column_stack([f.log_evidence() for f in self.filters]) + np.log(self.prior)
        w = np.exp(ll - ll.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        return w, np.column_stack([f.p_alive() for f in self.filters])


def _purchase_consequences(st: _State, rows: np.ndarray, t: int, sat_trait: np.ndarray,
                           eng: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Tickets/complaints and referrals triggered by purchases of ``rows`` on day ``t``."""
    n = rows.size
    u = rng.random((n, 4))
    ticket = u[:, 0] < 0.09
    complaint = ticket & (u[:, 1] < 0.55)
    delay = 1 + np.floor(rng.gamma(2.0, 2.0, n)).astype(np.int64)
    unresolved = complaint & (u[:, 2] < 0.3)
    due = np.where(unresolved, NEVER, t + delay)
    base = np.where(delay <= 3, 4.2, 2.2) + 0.6 * sat_trait[rows]
    sat = np.clip(np.rint(base + rng.normal(0.0, 0.7, n)), 1, 5)
    survey = (u[:, 3] < 0.7) & ~unresolved
    w = np.where(complaint, 0.8, 0.25)
    tk = ticket
    st.add_slot(rows[tk], due[tk], sat[tk], survey[tk], w[tk])
    referral = rng.random(n) < np.minimum(0.04 * eng[rows], 0.5)
    st.refs[rows[referral]] += 1
    return {"ticket": ticket, "complaint": complaint, "due": due, "sat": sat, "survey": survey,
            "referral": referral, "delay": delay}


@dataclass(frozen=True)
class BehaviourChange:
    """A lasting change of behaviour from ``date`` on (a market shift the models never saw).

    From day ``date`` every alive customer's daily purchase probability is multiplied by
    ``rate_factor`` and daily dropout hazard by ``hazard_factor`` (both capped at 1). The ground truth
    of the cut-offs ignores the change (like campaigns): it is the world the models were trained on.
    Used to test that monitoring sees models decay (``tests/test_monitor.py``).
    """

    date: dt.date | str
    rate_factor: float = 1.0
    hazard_factor: float = 1.0


def simulate(
    n_customers: int = 20_000,
    start: dt.date | str = "2023-01-01",
    end: dt.date | str = "2024-12-31",
    *,
    cutoffs: list[dt.date] | None = None,
    horizon_days: int = 90,
    seed: int = 7,
    truth_paths: int = 4,
    campaigns: Sequence[Campaign] = (),
    observable_truth: bool = True,
    rate_unknown_truth: Sequence[dt.date | str] = (),
    long_truth: Sequence[dt.date | str] = (),
    long_horizon_days: int = 360,
    behaviour_change: BehaviourChange | None = None,
    progress: bool = False,
) -> SyntheticWorld:
    """Generate a synthetic world.

    Parameters
    ----------
    n_customers
        Customers arriving over the period.
    start, end
        First and last day of the history (inclusive).
    cutoffs
        Cut-off dates for the ground truth (midnight; horizon [c, c + horizon_days)). Default: every 30
        days from ``start`` + 90 days up to ``end``.
    horizon_days
        Horizon of the ground truth.
    seed
        Everything is drawn from ``numpy.random.default_rng(seed)``: same seed, same world.
    truth_paths
        Simulated paths per customer for expected purchases (dropout is integrated out analytically).
    campaigns
        Randomised incentives to run (:class:`Campaign`); their assignments and true effects are in
        ``SyntheticWorld.assignments`` and ``.campaign_truth``. Without campaigns nothing else changes.
    observable_truth
        Also compute the observable-information truth (``p_alive_observable``,
        ``p_purchase_observable``, ``expected_spend_observable``; see :class:`AliveFilter`). It draws
        from its own random stream, so the world is the same either way. It roughly doubles the
        generation time; nothing is computed when there are no cut-offs.
    rate_unknown_truth
        Cut-offs (among ``cutoffs``) at which to also compute the truth for an observer who knows
        every trait except the purchase rate (``p_alive_rate_unknown``, ``p_purchase_rate_unknown``,
        ``expected_spend_rate_unknown``, NaN at other cut-offs; :class:`RateMixtureFilter` with
        ``RATE_NODES`` nodes). A diagnostic: it costs about ``RATE_NODES`` times the observable
        truth. Own random stream too, so the world is the same either way.
    long_truth, long_horizon_days
        Cut-offs (among ``cutoffs``) at which to also compute the expected spend over
        ``long_horizon_days`` (``expected_spend_long``, and ``expected_spend_long_observable`` with
        ``observable_truth``): the oracle of a CLV evaluation over several horizons. Own random
        stream, so the world is the same either way.
    behaviour_change
        A lasting change of purchase rate and dropout hazard from a date on
        (:class:`BehaviourChange`). Default None: no change (the world is bit-identical to one
        generated without the parameter).
    """
    t0 = time.perf_counter()
    start = pd.Timestamp(start).date()
    end = pd.Timestamp(end).date()
    n_days = (end - start).days + 1
    if n_days < 2:
        raise ValueError("end must be after start")
    if cutoffs is None:
        cutoffs = [start + dt.timedelta(days=d) for d in range(90, n_days, 30)]
    cut_days = sorted({(pd.Timestamp(c).date() - start).days for c in cutoffs})
    rng = np.random.default_rng(seed)
    n = int(n_customers)

    # --- latent traits and profile -------------------------------------------------------------
    signup = rng.integers(0, n_days, n)
    eng = rng.lognormal(0.0, 0.6, n)
    eng /= eng.mean()
    lam = np.clip(rng.gamma(RATE_SHAPE, RATE_MEAN / RATE_SHAPE, n) * eng**RATE_ENG, *RATE_CLIP)
    mu = rng.lognormal(np.log(40.0), 0.6, n)
    sat_trait = rng.normal(0.0, 1.0, n)
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_P)
    z = (np.log(mu) - np.log(40.0)) / 0.6 + rng.normal(0.0, 1.0, n)
    tier = np.digitize(z, [0.8, 1.9])  # ~ 60 / 30 / 10 %
    h0 = (rng.gamma(2.0, (1 / 500) / 2.0, n) * CHANNEL_HAZARD[channel] * TIER_HAZARD[tier]
          * eng**-0.5)
    region = rng.choice(len(REGIONS), n)
    birth_year = rng.integers(1950, 2006, n)
    cat_pref = rng.dirichlet(np.full(len(CATEGORIES), 0.5), n)
    chan_pref = rng.dirichlet(np.full(len(SALES_CHANNELS), 1.0), n)

    st = _State.new(lam, h0)
    death_day = np.full(n, -1, np.int64)

    ev: dict[str, list] = {k: [] for k in (
        "purchase", "browse", "closed", "share", "like", "ticket")}
    truth_parts = []
    cut_set = set(cut_days)
    camp_at: dict[int, list[tuple[int, Campaign]]] = {}
    for k, camp in enumerate(campaigns):
        d = (pd.Timestamp(camp.date).date() - start).days
        if not 0 < d < n_days:
            raise ValueError(f"campaign {camp.campaign_id!r} date {camp.date} is outside the history "
                             f"({start} .. {end})")
        camp_at.setdefault(d, []).append((k, camp))
    last_buy = np.full(n, -1, np.int64)
    boost = np.zeros(n)
    boost_until = np.full(n, -1, np.int64)
    camp_parts: list[pd.DataFrame] = []
    rates = daily_rates(eng)
    filt = AliveFilter(eng) if observable_truth and cut_days else None
    obs_rng = np.random.default_rng([seed, 2**31 - 1])
    mix_days = {(pd.Timestamp(c).date() - start).days for c in rate_unknown_truth}
    if not mix_days <= set(cut_days):
        raise ValueError(f"rate_unknown_truth {sorted(map(str, rate_unknown_truth))} must be among "
                         "the cut-offs")
    mix = RateMixtureFilter(eng, RATE_NODES) if mix_days else None
    mix_rng = np.random.default_rng([seed, 2**31 - 2])
    long_days = {(pd.Timestamp(c).date() - start).days for c in long_truth}
    if not long_days <= set(cut_days):
        raise ValueError(f"long_truth {sorted(map(str, long_truth))} must be among the cut-offs")
    long_rng = np.random.default_rng([seed, 2**31 - 3])
    change_day = None
    if behaviour_change is not None:
        change_day = (pd.Timestamp(behaviour_change.date).date() - start).days
        if not 0 < change_day < n_days:
            raise ValueError(f"behaviour_change date {behaviour_change.date} is outside the history "
                             f"({start} .. {end})")

    for t in range(n_days):
        if t in cut_set:
            part = _truth(st, t, signup, mu, sat_trait, eng, horizon_days, truth_paths, rng)
            if filt is not None and len(part):
                part = _observable_truth(part, filt, st, t, signup, mu, sat_trait, eng, horizon_days,
                                         truth_paths, obs_rng)
            if t in mix_days and len(part):
                part = _rate_unknown_truth(part, mix, st, t, signup, mu, sat_trait, eng,
                                           horizon_days, truth_paths, mix_rng)
            if t in long_days and len(part):
                lt = _truth(st, t, signup, mu, sat_trait, eng, long_horizon_days, truth_paths, long_rng)
                part = part.assign(expected_spend_long=lt["expected_spend"].to_numpy(),
                                   long_horizon_days=long_horizon_days)
                if filt is not None:
                    ia = _truth(_if_alive(st), t, signup, mu, sat_trait, eng, long_horizon_days,
                                truth_paths, long_rng)
                    part["expected_spend_long_observable"] = (
                        filt.p_alive()[part["customer_id"].to_numpy()] * ia["expected_spend"].to_numpy())
            truth_parts.append(part)
        for k, camp in camp_at.get(t, ()):
            camp_parts.append(_run_campaign(camp, k, seed, st, t, signup, last_buy, tier, boost,
                                            boost_until, mu, sat_trait, eng, max(truth_paths, 8)))
        arrived = signup <= t
        st.resolve(t)
        active = arrived & st.alive
        h = st.hazard()
        changed = change_day is not None and t >= change_day
        if changed:
            h = np.minimum(h * behaviour_change.hazard_factor, 1.0)
        u = rng.random((n, 3))
        died = active & (u[:, 0] < h)
        st.alive[died] = False
        death_day[died] = t
        closing = died & (u[:, 1] < P_CLOSE)
        closed = np.nonzero(closing)[0]
        ev["closed"].append((closed, np.full(closed.size, t)))
        active &= ~died
        lam_t = lam * (1.0 + np.where(boost_until > t, boost, 0.0)) if camp_at else lam
        if changed:
            lam_t = np.minimum(lam_t * behaviour_change.rate_factor, 1.0)
        buy = active & ((u[:, 2] < lam_t) | (signup == t))
        rows = np.nonzero(buy)[0]
        last_buy[rows] = t
        ev["purchase"].append((rows, np.full(rows.size, t)))
        if rows.size:
            cons = _purchase_consequences(st, rows, t, sat_trait, eng, rng)
            ev["ticket"].append((rows, t, cons))
        # browsing without purchase: alive follow engagement, after dropout it fades out
        p_browse = np.where(st.alive, rates[0], 0.0)
        gone = ~st.alive & (death_day >= 0)
        p_browse[gone] = rates[0][gone] * FADE * np.exp(-(t - death_day[gone]) / FADE_DAYS)
        ub = rng.random((n, 3))
        browse = arrived & ~buy & (ub[:, 0] < p_browse)
        b = np.nonzero(browse)[0]
        ev["browse"].append((b, np.full(b.size, t)))
        social_ok = arrived & st.alive
        share = social_ok & (ub[:, 1] < rates[1])
        sh = np.nonzero(share)[0]
        ev["share"].append((sh, np.full(sh.size, t)))
        like = social_ok & (ub[:, 2] < rates[2])
        lk = np.nonzero(like)[0]
        ev["like"].append((lk, np.full(lk.size, t)))
        if filt is not None:
            filt.update(t, signup == t, arrived, h, np.where(signup == t, 1.0, lam_t), buy,
                        closing, browse, share, like)
        if mix is not None and t < max(mix_days):
            mix.update(t, signup == t, arrived, h, lam_t / lam, buy, closing, browse, share, like)

    truth = (pd.concat(truth_parts, ignore_index=True) if truth_parts else
             pd.DataFrame(columns=["customer_id", "cutoff", "alive", "p_purchase",
                                   "expected_purchases", "expected_spend"]))
    if len(truth):
        truth["cutoff"] = [start + dt.timedelta(days=int(d)) for d in truth["cutoff"]]
        truth["cutoff"] = pd.to_datetime(truth["cutoff"])
    world = _assemble(ev, n, n_days, start, signup, mu, sat_trait, eng, channel, tier, region,
                      birth_year, cat_pref, chan_pref, rng, truth)
    if camp_parts:
        ct = pd.concat(camp_parts, ignore_index=True)
        ct["customer_id"] = _cid(ct["customer_id"].to_numpy())
        ct["assigned_ts"] = pd.to_datetime([start + dt.timedelta(days=int(d)) for d in ct.pop("day")]
                                           ).astype("datetime64[us]")
        world.assignments = ct[["customer_id", "campaign_id", "group", "assigned_ts"]].copy()
        world.campaign_truth = ct
    world.traits = pd.DataFrame({
        "customer_id": _cid(np.arange(n)), "purchase_rate": lam, "base_hazard": h0,
        "engagement": eng, "spend_level": mu, "satisfaction": sat_trait})
    world.params = {"n_customers": n, "start": str(start), "end": str(end), "seed": seed,
                    "horizon_days": horizon_days, "seconds": round(time.perf_counter() - t0, 2)}
    if behaviour_change is not None:
        world.params["behaviour_change"] = {"date": str(pd.Timestamp(behaviour_change.date).date()),
                                            "rate_factor": behaviour_change.rate_factor,
                                            "hazard_factor": behaviour_change.hazard_factor}
    return world


def _run_campaign(camp: Campaign, k: int, seed: int, st: _State, t: int, signup: np.ndarray,
                  last_buy: np.ndarray, tier: np.ndarray, boost: np.ndarray, boost_until: np.ndarray,
                  mu: np.ndarray, sat_trait: np.ndarray, eng: np.ndarray, paths: int) -> pd.DataFrame:
    """Assign a campaign on day ``t``, switch on the lift of the treated, and return its truth."""
    crng = np.random.default_rng([seed, camp.seed, k])
    idx = np.nonzero(signup < t)[0]
    treated = crng.random(idx.size) < camp.treat_share
    tau = camp.effect(t - last_buy[idx], tier[idx])
    scale = np.ones(signup.size)
    scale[idx] = 1.0 + tau
    path_seed = int(crng.integers(2**32))
    arms = {}
    for arm, lam_scale in (("control", None), ("treatment", scale)):
        arms[arm] = _truth(st, t, signup, mu, sat_trait, eng, camp.window_days, paths,
                           np.random.default_rng(path_seed), lam_scale=lam_scale)
    tr = idx[treated]
    boost[tr] = tau[treated]
    boost_until[tr] = t + camp.window_days
    c, x = arms["control"], arms["treatment"]
    return pd.DataFrame({
        "customer_id": idx, "campaign_id": camp.campaign_id, "day": t,
        "group": np.where(treated, "treatment", "control"), "alive": c["alive"].to_numpy(),
        "days_since_last_purchase": t - last_buy[idx], "tau": tau,
        "p_purchase_control": c["p_purchase"].to_numpy(),
        "p_purchase_treatment": x["p_purchase"].to_numpy(),
        "uplift_purchase": x["p_purchase"].to_numpy() - c["p_purchase"].to_numpy(),
        "expected_spend_control": c["expected_spend"].to_numpy(),
        "expected_spend_treatment": x["expected_spend"].to_numpy(),
        "uplift_spend": x["expected_spend"].to_numpy() - c["expected_spend"].to_numpy(),
    })


def _truth(st: _State, c: int, signup: np.ndarray, mu: np.ndarray, sat_trait: np.ndarray,
           eng: np.ndarray, horizon: int, paths: int, rng: np.random.Generator,
           lam_scale: np.ndarray | None = None) -> pd.DataFrame:
    """Exact P(purchase in [c, c+H)) and low-noise expected purchases for customers arrived before c
    (purchase rates multiplied by ``lam_scale`` over the horizon when given)."""
    idx = np.nonzero(signup < c)[0]
    if idx.size == 0:
        return pd.DataFrame()
    # P(no purchase): deterministic hazard path until the first purchase
    s = st.take(idx)
    if lam_scale is not None:
        s.lam = np.minimum(s.lam * lam_scale[idx], 1.0)
    alive = s.alive.astype(float)
    q = alive.copy()
    p0 = 1.0 - alive
    for t in range(c, c + horizon):
        s.resolve(t)
        h = s.hazard()
        p0 += q * h
        q *= (1.0 - h) * (1.0 - s.lam)
    p0 += q
    # expected purchases: paths simulated as if alive (purchases drive complaints/referrals),
    # survival carried as a probability
    live = idx[st.alive[idx]]
    exp_p = np.zeros(idx.size)
    if live.size:
        rep = np.tile(live, paths)
        sp = st.take(rep)
        if lam_scale is not None:
            sp.lam = np.minimum(sp.lam * lam_scale[rep], 1.0)
        surv = np.ones(rep.size)
        total = np.zeros(rep.size)
        for t in range(c, c + horizon):
            sp.resolve(t)
            surv *= 1.0 - sp.hazard()
            total += surv * sp.lam
            buy = np.nonzero(rng.random(rep.size) < sp.lam)[0]
            if buy.size:
                _purchase_consequences(sp, buy, t, sat_trait[rep], eng[rep], rng)
        mean = total.reshape(paths, live.size).mean(axis=0)
        pos = np.searchsorted(idx, live)
        exp_p[pos] = mean
    return pd.DataFrame({
        "customer_id": idx, "cutoff": c, "alive": st.alive[idx],
        "p_purchase": 1.0 - p0, "expected_purchases": exp_p, "expected_spend": exp_p * mu[idx],
    })


def _if_alive(st: _State) -> _State:
    """The same state with every customer alive (the arrays other than ``alive`` are shared)."""
    out = _State(**{k: getattr(st, k) for k in _State.FIELDS})
    out.alive = np.ones(st.alive.size, bool)
    return out


def _observable_truth(part: pd.DataFrame, filt: AliveFilter, st: _State, c: int,
                      signup: np.ndarray, mu: np.ndarray, sat_trait: np.ndarray, eng: np.ndarray,
                      horizon: int, paths: int, rng: np.random.Generator) -> pd.DataFrame:
    """``part`` (the truth at cut-off ``c``) with the observable-information truth appended:
    P(alive | history, traits) times the truth of the same customer if alive."""
    if_alive = _if_alive(st)
    ia = _truth(if_alive, c, signup, mu, sat_trait, eng, horizon, paths, rng)
    post = filt.p_alive()[part["customer_id"].to_numpy()]
    return part.assign(p_alive_observable=post,
                       p_purchase_observable=post * ia["p_purchase"].to_numpy(),
                       expected_spend_observable=post * ia["expected_spend"].to_numpy())


def _rate_unknown_truth(part: pd.DataFrame, mix: RateMixtureFilter, st: _State, c: int,
                        signup: np.ndarray, mu: np.ndarray, sat_trait: np.ndarray, eng: np.ndarray,
                        horizon: int, paths: int, rng: np.random.Generator) -> pd.DataFrame:
    """``part`` with the truth for an observer who knows every trait but the purchase rate: the
    truth if alive at each rate node, weighted by the posterior P(rate, alive | history)."""
    if_alive = _if_alive(st)
    w, p_alive = mix.posterior()
    ids = part["customer_id"].to_numpy()
    p = np.zeros(ids.size)
    spend = np.zeros(ids.size)
    for j in range(w.shape[1]):
        wj = (w[:, j] * p_alive[:, j])[ids]
        ia = _truth(if_alive, c, signup, mu, sat_trait, eng, horizon, paths, rng,
                    lam_scale=mix.lam[:, j] / st.lam)
        p += wj * ia["p_purchase"].to_numpy()
        spend += wj * ia["expected_spend"].to_numpy()
    return part.assign(p_alive_rate_unknown=(w * p_alive).sum(axis=1)[ids],
                       p_purchase_rate_unknown=p, expected_spend_rate_unknown=spend)


def _ts(start: dt.date, day: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    base = np.datetime64(start, "s")
    return base + day.astype("timedelta64[D]").astype("timedelta64[s]") + np.asarray(
        seconds, np.int64).astype("timedelta64[s]")


def _cat(parts: list) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.empty(0, int), np.empty(0, int)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _cid(idx: np.ndarray) -> np.ndarray:
    return np.char.add("C", np.char.zfill(idx.astype(str), 7))


def _assemble(ev, n, n_days, start, signup, mu, sat_trait, eng, channel, tier, region, birth_year,
              cat_pref, chan_pref, rng, truth) -> SyntheticWorld:
    # ---- purchases -> transactions + purchase-day activity ----
    p_idx, p_day = _cat(ev["purchase"])
    n_p = p_idx.size
    sess_start = rng.integers(6 * 3600, 22 * 3600, n_p)
    dur = np.maximum(30, rng.gamma(2.0, 300.0, n_p)).astype(np.int64)
    buy_sec = sess_start + (dur * rng.uniform(0.6, 0.95, n_p)).astype(np.int64)
    amount = np.round(rng.gamma(3.0, mu[p_idx] / 3.0), 2) + 0.01
    cat_u = rng.random(n_p)
    category = (cat_u[:, None] > np.cumsum(cat_pref[p_idx], axis=1)).sum(axis=1).clip(0, 5)
    ch_u = rng.random(n_p)
    schan = (ch_u[:, None] > np.cumsum(chan_pref[p_idx], axis=1)).sum(axis=1).clip(0, 2)
    discounted = rng.random(n_p) < 0.2
    discount = np.where(discounted, np.round(amount * rng.uniform(0.05, 0.3, n_p), 2), 0.0)
    margin = np.round(amount * CATEGORY_MARGIN[category] - discount * 0.5, 2)
    order_id = np.char.add("O", np.arange(n_p).astype(str))
    quantity = 1 + rng.poisson(0.6, n_p)
    tx_ts = _ts(start, p_day, buy_sec)

    # returns: refund transactions and after-sales return events 3-20 days later
    ret = rng.random(n_p) < 0.05
    r_day = p_day[ret] + rng.integers(3, 21, ret.sum())
    keep = r_day < n_days
    r_src = np.nonzero(ret)[0][keep]
    r_day = r_day[keep]
    r_amt = -np.round(amount[r_src] * np.where(rng.random(r_src.size) < 0.7, 1.0,
                                               rng.uniform(0.2, 0.8, r_src.size)), 2)
    r_ts = _ts(start, r_day, rng.integers(8 * 3600, 20 * 3600, r_src.size))
    transactions = pd.DataFrame({
        "customer_id": np.concatenate([p_idx, p_idx[r_src]]),
        "ts": np.concatenate([tx_ts, r_ts]),
        "amount": np.concatenate([amount, r_amt]),
        "order_id": np.concatenate([order_id, np.char.add(order_id[r_src], "-R")]),
        "quantity": np.concatenate([quantity, -quantity[r_src]]),
        "category": CATEGORIES[np.concatenate([category, category[r_src]])],
        "channel": SALES_CHANNELS[np.concatenate([schan, schan[r_src]])],
        "discount": np.concatenate([discount, np.zeros(r_src.size)]),
        "margin": np.concatenate([margin, -margin[r_src]]),
    })

    # ---- activity ----
    b_idx, b_day = _cat(ev["browse"])
    n_b = b_idx.size
    b_start = rng.integers(0, 23 * 3600, n_b)
    b_dur = np.maximum(10, rng.gamma(1.5, 200.0, n_b)).astype(np.int64)
    s_idx = np.concatenate([p_idx, b_idx])
    s_day = np.concatenate([p_day, b_day])
    s_start = np.concatenate([sess_start, b_start])
    s_dur = np.concatenate([dur, b_dur])
    n_s = s_idx.size
    is_buy = np.zeros(n_s, bool)
    is_buy[:n_p] = True
    views = 1 + rng.poisson(0.3 * np.minimum(eng[s_idx], 4))
    v_rep = np.repeat(np.arange(n_s), views)
    k = np.arange(v_rep.size) - np.repeat(np.cumsum(views) - views, views)  # view number in session
    v_off = k * np.maximum(1, (s_dur * 0.6 / views).astype(np.int64))[v_rep]
    cart = is_buy | (rng.random(n_s) < 0.2)
    c_sess = np.nonzero(cart)[0]
    c_off = (s_dur[c_sess] * 0.6).astype(np.int64)
    login = rng.random(n_s) < 0.3
    l_sess = np.nonzero(login)[0]
    cl_idx, cl_day = _cat(ev["closed"])
    act_parts = [
        ("session", s_idx, s_day, s_start, s_dur.astype(float)),
        ("login", s_idx[l_sess], s_day[l_sess], s_start[l_sess], np.full(l_sess.size, np.nan)),
        ("page_view", s_idx[v_rep], s_day[v_rep], s_start[v_rep] + 1 + v_off,
         np.full(v_rep.size, np.nan)),
        ("add_to_cart", s_idx[c_sess], s_day[c_sess], s_start[c_sess] + c_off + 1,
         np.full(c_sess.size, np.nan)),
        ("account_closed", cl_idx, cl_day, rng.integers(1, 86_000, cl_idx.size),
         np.full(cl_idx.size, np.nan)),
    ]
    activity = pd.DataFrame({
        "customer_id": np.concatenate([p[1] for p in act_parts]),
        "ts": np.concatenate([_ts(start, p[2], np.minimum(p[3], 86_399)) for p in act_parts]),
        "event_type": np.concatenate([np.full(p[1].size, p[0]) for p in act_parts]),
        "duration_s": np.concatenate([p[4] for p in act_parts]),
    })

    # ---- after-sales: tickets/complaints from purchases, surveys, returns ----
    t_rows, t_days, t_cp, t_due, t_sat, t_sv = [], [], [], [], [], []
    ref_rows, ref_days = [], []
    for rows, t, cons in ev["ticket"]:
        tk = cons["ticket"]
        t_rows.append(rows[tk])
        t_days.append(np.full(tk.sum(), t))
        t_cp.append(cons["complaint"][tk])
        t_due.append(cons["due"][tk])
        t_sat.append(cons["sat"][tk])
        t_sv.append(cons["survey"][tk])
        ref = cons["referral"]
        ref_rows.append(rows[ref])
        ref_days.append(np.full(ref.sum(), t))
    tr = np.concatenate(t_rows) if t_rows else np.empty(0, int)
    td = np.concatenate(t_days) if t_days else np.empty(0, int)
    tcp = np.concatenate(t_cp) if t_cp else np.empty(0, bool)
    tdue = np.concatenate(t_due) if t_due else np.empty(0, int)
    tsat = np.concatenate(t_sat) if t_sat else np.empty(0)
    tsv = np.concatenate(t_sv) if t_sv else np.empty(0, bool)
    t_sec = rng.integers(8 * 3600, 22 * 3600, tr.size)
    t_ts = _ts(start, td, t_sec)
    resolved_known = tdue < n_days
    res_ts = np.where(resolved_known, _ts(start, np.minimum(tdue, n_days - 1),
                                          rng.integers(8 * 3600, 20 * 3600, tr.size)),
                      np.datetime64("NaT"))
    sv = tsv & resolved_known
    sv_ts = res_ts[sv] + np.timedelta64(60, "s")
    sv_nps = np.clip(np.rint(2 * tsat[sv] + rng.normal(0, 1.0, sv.sum())), 0, 10)
    # NPS surveys after some purchases
    nps_mask = rng.random(n_p) < 0.08
    nps_idx = p_idx[nps_mask]
    nps_day = p_day[nps_mask] + rng.integers(1, 8, nps_mask.sum())
    ok = nps_day < n_days
    nps_idx, nps_day = nps_idx[ok], nps_day[ok]
    nps_val = np.clip(np.rint(7 + 1.5 * sat_trait[nps_idx] + rng.normal(0, 1.5, nps_idx.size)), 0, 10)
    nps_sat = np.clip(np.rint(3.6 + 0.8 * sat_trait[nps_idx] + rng.normal(0, 0.6, nps_idx.size)), 1, 5)
    nps_ts = _ts(start, nps_day, rng.integers(8 * 3600, 22 * 3600, nps_idx.size))
    ret_ts = r_ts + np.timedelta64(120, "s")
    as_parts = {
        "customer_id": [tr, tr[sv], nps_idx, p_idx[r_src]],
        "ts": [t_ts, sv_ts, nps_ts, ret_ts],
        "event_type": [np.where(tcp, "complaint", "ticket"), np.full(sv.sum(), "survey"),
                       np.full(nps_idx.size, "survey"), np.full(r_src.size, "return")],
        "resolved_ts": [res_ts, np.full(sv.sum(), np.datetime64("NaT"), "datetime64[s]"),
                        np.full(nps_idx.size, np.datetime64("NaT"), "datetime64[s]"),
                        np.full(r_src.size, np.datetime64("NaT"), "datetime64[s]")],
        "satisfaction": [np.full(tr.size, np.nan), tsat[sv], nps_sat, np.full(r_src.size, np.nan)],
        "nps": [np.full(tr.size, np.nan), sv_nps, nps_val, np.full(r_src.size, np.nan)],
        "amount": [np.full(tr.size, np.nan), np.full(sv.sum(), np.nan), np.full(nps_idx.size, np.nan),
                   -r_amt],
    }
    after_sales = pd.DataFrame({k: np.concatenate(v) for k, v in as_parts.items()})
    after_sales["resolved_ts"] = pd.to_datetime(after_sales["resolved_ts"])

    # ---- social ----
    sh_idx, sh_day = _cat(ev["share"])
    lk_idx, lk_day = _cat(ev["like"])
    rf_idx = np.concatenate(ref_rows) if ref_rows else np.empty(0, int)
    rf_day = np.concatenate(ref_days) if ref_days else np.empty(0, int)
    conv = rng.random(rf_idx.size) < 0.35
    cv_day = rf_day[conv] + rng.integers(1, 31, conv.sum())
    okc = cv_day < n_days
    cv_idx, cv_day = rf_idx[conv][okc], cv_day[okc]
    rv_mask = rng.random(n_p) < 0.12
    rv_idx = p_idx[rv_mask]
    rv_day = p_day[rv_mask] + rng.integers(2, 11, rv_mask.sum())
    okr = rv_day < n_days
    rv_idx, rv_day = rv_idx[okr], rv_day[okr]
    rating = np.clip(np.rint(3.8 + 0.7 * sat_trait[rv_idx] + rng.normal(0, 0.8, rv_idx.size)), 1, 5)
    soc = [("share", sh_idx, sh_day), ("like", lk_idx, lk_day), ("referral", rf_idx, rf_day),
           ("referral_converted", cv_idx, cv_day), ("review", rv_idx, rv_day)]
    social = pd.DataFrame({
        "customer_id": np.concatenate([s[1] for s in soc]),
        "ts": np.concatenate([_ts(start, s[2], rng.integers(1, 86_399, s[1].size)) for s in soc]),
        "event_type": np.concatenate([np.full(s[1].size, s[0]) for s in soc]),
        "rating": np.concatenate([np.full(sh_idx.size + lk_idx.size + rf_idx.size + cv_idx.size,
                                          np.nan), rating]),
    })

    customers = pd.DataFrame({
        "customer_id": np.arange(n),
        "signup_ts": _ts(start, signup, rng.integers(0, 6 * 3600, n)),
        "acquisition_channel": CHANNELS[channel],
        "membership_tier": TIERS[tier],
        "region": REGIONS[region],
        "birth_year": birth_year,
    })
    frames = {"customers": customers, "transactions": transactions, "activity": activity,
              "social": social, "after_sales": after_sales}
    for name, df in frames.items():
        df["customer_id"] = _cid(df["customer_id"].to_numpy())
        if "ts" in df:
            df["ts"] = pd.to_datetime(df["ts"]).astype("datetime64[us]")
            frames[name] = df.sort_values(["customer_id", "ts"], kind="stable").reset_index(drop=True)
    after = frames["after_sales"]
    after["resolved_ts"] = after["resolved_ts"].astype("datetime64[us]")
    frames["customers"]["signup_ts"] = frames["customers"]["signup_ts"].astype("datetime64[us]")
    if len(truth):
        truth["customer_id"] = _cid(truth["customer_id"].to_numpy())
        truth = truth.sort_values(["cutoff", "customer_id"]).reset_index(drop=True)
    return SyntheticWorld(truth=truth, **frames)
