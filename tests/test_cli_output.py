"""What the command line prints: user data verbatim (never Rich markup), whole lines in logs."""

from __future__ import annotations

import io
import json

from tests.clirun import clvml

CONFIG = """data:
  tables:
    transactions: {path: tx.csv}
    customers: {path: cust.csv}
    activity: {path: act.csv}
cutoffs: {start: 2024-01-01}
"""


def _world(tmp_path):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\n[/foo],2024-01-02,10\n[bold]x,2024-01-03,12\n"
                                     "c1,2024-01-04,5\n")
    (tmp_path / "act.csv").write_text("customer_id,ts,event_type\nc1,2024-01-02,tap\n")
    (tmp_path / "cust.csv").write_text("customer_id\nc1\n")
    (tmp_path / "c.yaml").write_text(CONFIG)
    return tmp_path / "c.yaml"


def test_validate_prints_markup_like_ids_and_hints_verbatim(tmp_path):
    proc = clvml("validate", str(_world(tmp_path)))
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "MarkupError" not in proc.stderr
    err = proc.stderr.splitlines()
    assert "      e.g. {customer_id='[/foo]'}; {customer_id='[bold]x'}" in err
    assert ("      fix: map your values: data.tables.activity.event_types.<canonical>: [your values], or set "
            "data.policies.unknown_event_types: drop") in err
    assert any(line.startswith("  [error] transactions.customer_id: 2 customer(s) absent") for line in err)


def test_logs_are_not_wrapped_at_80_columns(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "[bold]another-long-folder-name-for-run-20250101"
    deep.mkdir(parents=True)
    missing = deep / "config-that-does-not-exist.yaml"
    assert len(str(missing)) > 160
    proc = clvml("validate", str(missing))
    assert proc.returncode == 2
    assert f"  - config file {missing} does not exist" in proc.stderr.splitlines()
    assert proc.stderr.splitlines()[0] == f"error: 1 problem(s) in {missing}:"


def test_progress_is_json_lines_off_a_terminal_and_say_never_reads_markup(monkeypatch):
    from clvml import console

    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    show = console.progress()
    show("reading [/foo] from /data/" + "x" * 150)
    console.say("[bold]x [your values] " + "y" * 150)
    console.error("customer [/foo]")
    lines = buf.getvalue().splitlines()
    assert json.loads(lines[0])["event"] == "reading [/foo] from /data/" + "x" * 150
    assert lines[1:] == ["[bold]x [your values] " + "y" * 150, "error: customer [/foo]"]


def test_progress_bar_on_a_terminal_shows_counts_and_eta():
    """On a terminal, counted items of a long step drive a bar with done/total and an ETA from the pace
    so far; plain messages stay timed lines."""
    from rich.console import Console

    from clvml.console import Progress

    now = [0.0]
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=100, color_system=None)
    show = Progress(tty=True, console=con, clock=lambda: now[0])
    now[0] = 2.0
    show("scoring 4,000 customers in 4 chunk(s)")  # the step starts after this line
    for done, t in ((1, 5.0), (2, 8.0)):
        now[0] = t
        show(f"chunk {done}/4", done=done, total=4, step="scoring chunks")
    assert show.eta("scoring chunks", 2, 4) == 6.0  # 3 s per chunk, 2 chunks left
    out = buf.getvalue()
    assert "2.0s scoring 4,000 customers" in out
    assert "scoring chunks" in out and "1/4" in out and "ETA 0:09" in out  # 3 s per chunk, 3 left
    assert "2/4" in out and "ETA 0:06" in out and "\x1b[" in out  # a live terminal display
    now[0] = 14.0
    show("chunk 4/4", done=4, total=4, step="scoring chunks")
    assert "4/4" in buf.getvalue() and "done" in buf.getvalue()  # the finished bar stays as one line
    assert show._bars is None  # the display is stopped: later lines print normally


def test_counts_reach_plain_callbacks_as_messages():
    from clvml.console import count

    seen = []
    count(seen.append, "chunk 1/2", done=1, total=2, step="scoring chunks")
    count(seen.append, "batch 1/2", done=1, total=2, step="feature batches", plain=False)  # bar-only items
    assert seen == ["chunk 1/2"]


def test_boosting_rounds_report_counts_inside_a_reporting_block(monkeypatch):
    """LightGBM's rounds report to the enclosing progress callback: every tenth, done/total and ETA, and
    a step stopped early by early stopping ends at its total."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd

    from clvml.console import Progress, reporting
    from clvml.modeling.lgbm import fit_with_early_stopping

    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = (X.a + rng.normal(size=300) > 0).astype(int).to_numpy()
    params = {"n_estimators": 40, "learning_rate": 0.3, "verbose": -1, "n_jobs": 1}
    with reporting(Progress(tty=False)):
        _, _, rounds = fit_with_early_stopping(lgb.LGBMClassifier, params, X[:200], y[:200], X[200:], y[200:], 3)
    lines = [json.loads(ln) for ln in buf.getvalue().splitlines()]
    assert lines and all(ln["step"] == "training rounds" for ln in lines)
    assert [ln["done"] for ln in lines[:2]] == [4, 8] and lines[0]["total"] == 40 and lines[0]["eta_s"] >= 0
    final = [ln for ln in lines if ln["total"] == rounds]  # the refit on train + validation
    assert final and final[-1]["done"] == rounds and final[-1]["eta_s"] == 0
    # outside a reporting block nothing is said
    buf.truncate(0)
    fit_with_early_stopping(lgb.LGBMClassifier, params, X[:200], y[:200], X[200:], y[200:], 3)
    assert buf.getvalue() == ""
