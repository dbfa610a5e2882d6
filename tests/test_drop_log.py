"""Issue 31.4: every row a policy drops (or keeps) is one log line naming table, column, reason, rows
and an example, on the terminal and in JSON logs; ``--strict`` turns any drop into a failure."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from clvml.cli import app
from clvml.config import load_config
from clvml.data.loading import load_data

CSV = ("customer_id,ts,amount\na,2024-01-05,10\na,2024-01-05,10\nb,2024-02-01,5\n"
       "c,2024-02-03,7\n,2024-02-04,3\n")


def _config(tmp_path, **policies):
    (tmp_path / "tx.csv").write_text(CSV)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"data": {"tables": {"transactions": {"path": "tx.csv"}},
                                             "policies": policies},
                                    "cutoffs": {"start": "2024-01-01"}}))
    return path


def test_every_drop_is_a_log_line(tmp_path):
    said: list[str] = []
    ds = load_data(load_config(_config(tmp_path, duplicates="drop", null_keys="drop")), said.append)
    assert ds.report.rows_out["transactions"] == 3
    drops = [s for s in said if "dropped by policy" in s]
    assert len(drops) == 2, said
    dup = next(s for s in drops if "duplicate" in s)
    assert dup.startswith("warning: transactions") and "1 row(s) dropped by policy" in dup
    assert "e.g. {" in dup and "'a'" in dup
    null = next(s for s in drops if "customer_id" in s)
    assert "1 row(s) dropped by policy" in null


def test_json_log_form_and_strict_exit(tmp_path):
    path = _config(tmp_path, duplicates="drop", null_keys="drop")
    res = CliRunner().invoke(app, ["report", "analytics", "-c", str(path), "--out", str(tmp_path / "rep")])
    lines = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    assert sum("dropped by policy" in line["event"] for line in lines) == 2, res.output
    strict = CliRunner().invoke(app, ["validate", str(path), "--strict"])
    assert strict.exit_code == 3, strict.output
    text = " ".join(strict.output.split())
    assert "--strict / data.strict: true refuses every dropped row" in text
    assert "transactions" in text and "1 row(s)" in text
    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0
