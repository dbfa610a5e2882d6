"""Champion and challenger against the real MLflow tracking server: shadow scoring, the comparison on
matured partitions, promote / --force / --rollback, and the calendar-aware drift stop."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clvml.cli import app
from clvml.config import load_config
from clvml.data.loading import load_data
from clvml.errors import DriftError
from clvml.jobs.train import train
from clvml.monitoring.challenger import compare_champion_challenger
from clvml.scoring.shadow import score_with_shadow
from tests.test_demo import FAST

#: as_ofs scored by both models; with a 30-day horizon both have matured by the world's end (2024-06-30)
AS_OFS = [dt.date(2024, 5, 1), dt.date(2024, 6, 1)]
LATE = dt.date(2024, 6, 8)  # scored too, its horizon runs past the data


def _config(tmp: Path, url: str, poor: bool = False, **over) -> Path:
    cfg = {
        "name": "shop", "seed": 1,
        "data": {"synthetic": {"n_customers": 800, "start": "2023-01-01", "end": "2024-06-30", "seed": 5,
                               "path": "world"}},
        # trained on cut-offs up to 2024-01-26 (the drift reference), scored 3 to 5 months later
        "cutoffs": {"start": "2023-05-01", "every_days": 90, "end": "2024-02-01"},
        # at 2024-06-01 tenure drifts by PSI 0.32 (every customer is 4 months older), the next feature
        # by 0.18 (0.26 by mid-June): a stop at 0.3 would stop these runs on tenure alone
        "scoring": {"drift_stop": 0.3},
        "labels": {"horizon_days": 30},
        # no cut-off has 20 x 30 days of data after it: no long-horizon CLV evaluation (a faster train)
        "clv": {"periods": 20, "survival": "geometric"},
        "model": {"churn": FAST, "value": FAST, "auto_select": False},
        "tracking": {"uri": url, "experiment": "challenger"},
        "output": {"dir": "out", "model_dir": "models-poor" if poor else "models"},
        "promote": {"metric": "churn_roc_auc", "min_runs": 2},
        **over,
    }
    if poor:  # the deliberately worse model: transactions of the last 30 days only, one split per model
        cfg["features"] = {"families": ["transactions"], "windows": [30]}
        stump = {"n_estimators": 1, "num_leaves": 2, "min_child_samples": 50, "early_stopping_rounds": 1}
        cfg["model"] = {"churn": stump, "value": stump}
    path = tmp / f"{'poor' if poor else 'good'}-{len(list(tmp.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def loop(server, tmp_path_factory):
    """Two registered versions of ``shop``: 1 poor (the first champion), 2 good (the candidate); every
    as_of scored by the champion into production and by the candidate into the shadow dataset."""
    url, _ = server
    tmp = tmp_path_factory.mktemp("challenger")
    good, poor = _config(tmp, url), _config(tmp, url, poor=True)
    cfg = load_config(good)
    ds = load_data(cfg)
    train(load_config(poor), ds)  # version 1
    train(cfg, ds)  # version 2, alias "candidate"
    res = CliRunner().invoke(app, ["promote", "-c", str(good), "--force", "--version", "1"])
    assert res.exit_code == 0, res.output  # the first champion: named by hand, forced, recorded
    for d in [*AS_OFS, LATE]:
        score_with_shadow(cfg, "models:/shop@champion", "models:/shop@candidate", d, ds=ds)
    return tmp, good, cfg, ds, url


def _client(url: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=url)


def _champion(url: str) -> str:
    return str(_client(url).get_model_version_by_alias("shop", "champion").version)


def _run_of_move(url: str, to: str) -> mlflow.entities.Run:
    c = _client(url)
    exp = c.get_experiment_by_name("challenger")
    runs = c.search_runs([exp.experiment_id], f"tags.`clvml.job` = 'promote' and tags.`clvml.promote.to` = '{to}'",
                         order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0]


def test_better_challenger_is_promoted_with_its_evidence_and_a_worse_one_never(loop):
    tmp, good, cfg, ds, url = loop
    comp = compare_champion_challenger(cfg, ds)
    runs = comp.runs.set_index("as_of")
    assert list(runs.index) == [*AS_OFS, LATE]
    assert list(runs.status) == ["matured"] * 2 + ["not_matured"]  # a horizon past the data is not judged
    assert (runs.loc[AS_OFS, "customers"] > 300).all() and runs.loc[LATE, "customers"] == 0
    assert (runs.loc[AS_OFS, "improvement"] > 0.05).all()  # a real model beats one split
    assert set(comp.table.role) == {"champion", "challenger"}
    assert {"churn_roc_auc", "value_normalized_gini", "value_mae"} <= set(comp.table.metric)
    assert comp.decision["outcome"] == "promote" and comp.decision["challenger"]["registry_version"] == "2"

    res = CliRunner().invoke(app, ["promote", "-c", str(good)])
    assert res.exit_code == 0, res.output
    assert _champion(url) == "2" and "moved from 1 to version 2" in res.output
    run = _run_of_move(url, "2")
    tags = run.data.tags
    assert (tags["clvml.promote.from"], tags["clvml.promote.forced"], tags["clvml.promote.moved"],
            tags["clvml.promote.outcome"]) == ("1", "false", "true", "promote")
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="evidence.json",
                                               tracking_uri=url, dst_path=str(tmp / "ev"))
    ev = json.loads(Path(path).read_text())
    assert ev["decision"]["as_ofs"] == [str(d) for d in AS_OFS] and len(ev["runs"]) == 3
    assert ev["decision"]["mean_improvement"] == pytest.approx(runs.loc[AS_OFS, "improvement"].mean(), abs=1e-6)

    # once version 2 is the champion, production holds its scores and the poor model is the challenger:
    # the same partitions with the roles swapped (production <-> shadow roots). It loses, every time
    prod, shadow = tmp / "out" / "scores", tmp / "out" / "shadow_scores"
    swapped = _config(tmp, url, scoring={"out": str(shadow), "shadow_out": str(prod), "drift_stop": 0.3})
    res = CliRunner().invoke(app, ["promote", "-c", str(swapped)])
    assert res.exit_code == 22, res.output
    assert "version 1 was not promoted" in res.output and _champion(url) == "2"
    assert _run_of_move(url, "1").data.tags["clvml.promote.moved"] == "false"  # the refusal is on record
    res = CliRunner().invoke(app, ["promote", "-c", str(swapped), "--version", "1"])
    assert res.exit_code == 22 and _champion(url) == "2"
    # not enough matured runs, no shadow partitions, an unknown version: each its own exit, alias kept
    few = _config(tmp, url, promote={"min_runs": 3}, scoring={"out": str(shadow), "shadow_out": str(prod),
                                                               "drift_stop": 0.3})
    res = CliRunner().invoke(app, ["promote", "-c", str(few)])
    assert res.exit_code == 21 and "promote.min_runs is 3 (1 more" in res.output, res.output
    empty = _config(tmp, url, scoring={"shadow_out": str(tmp / "no-shadow"), "drift_stop": 0.3})
    res = CliRunner().invoke(app, ["promote", "-c", str(empty)])
    assert res.exit_code == 20 and "--shadow" in res.output, res.output
    res = CliRunner().invoke(app, ["promote", "-c", str(good), "--force", "--version", "7"])
    assert res.exit_code == 9 and "no version 7" in res.output, res.output
    assert _champion(url) == "2"

    # --force promotes the loser anyway, and says so; rollback walks back through the champions
    res = CliRunner().invoke(app, ["promote", "-c", str(swapped), "--force"])
    assert res.exit_code == 0 and "(forced)" in res.output, res.output
    assert _champion(url) == "1"
    forced = _run_of_move(url, "1")
    assert forced.data.tags["clvml.promote.forced"] == "true" and forced.data.tags["clvml.promote.outcome"] == "keep"
    assert _client(url).get_model_version("shop", "1").tags["clvml.forced"] == "true"
    res = CliRunner().invoke(app, ["promote", "-c", str(good), "--rollback"])
    assert res.exit_code == 0 and _champion(url) == "2", res.output
    res = CliRunner().invoke(app, ["promote", "-c", str(good), "--rollback"])
    assert res.exit_code == 0 and _champion(url) == "1", res.output  # undoes 1 -> 2
    res = CliRunner().invoke(app, ["promote", "-c", str(good), "--rollback"])
    assert res.exit_code == 9 and "no earlier champion" in res.output and _champion(url) == "1", res.output


def _bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and not p.name.endswith(".lock")}


def test_shadow_scoring_never_touches_production(loop):
    tmp, good, cfg, ds, url = loop
    prod, shadow = tmp / "out" / "scores", tmp / "out" / "shadow_scores"
    before = _bytes(prod)
    assert len([k for k in before if k.endswith(".parquet")]) == 3
    # shadow only: every production byte unchanged, the shadow partition replaced
    r = score_with_shadow(cfg, None, "models:/shop/2", AS_OFS[0], ds=ds, shadow_only=True)
    assert r.production is None and r.shadow.target == str(shadow / f"as_of={AS_OFS[0]}")
    assert _bytes(prod) == before
    # a shadow run that fails after production: production is written, exit 23 names both
    res = CliRunner().invoke(app, ["score", "-c", str(good), "--model", "models:/shop/1", "--as-of",
                                   str(AS_OFS[1]), "--shadow", "models:/shop@no-such-alias"])
    assert res.exit_code == 23, res.output
    assert "production scores were written" in res.output and "no-such-alias" in res.output
    part = f"as_of={AS_OFS[1]}/part-0000.parquet"
    after = _bytes(prod)
    assert after[part] == before[part]  # the same model and data: the same bytes, published
    assert json.loads(after[f"as_of={AS_OFS[1]}/_manifest.json"]) != json.loads(before[f"as_of={AS_OFS[1]}/_manifest.json"])
    # misuse is refused before anything runs
    res = CliRunner().invoke(app, ["score", "-c", str(good), "--as-of", "2024-04-01", "--shadow",
                                   "models:/shop/1", "--shadow-only", "--shadow-out", str(prod / "inner")])
    assert res.exit_code == 2 and "overlap" in res.output, res.output
    res = CliRunner().invoke(app, ["score", "-c", str(good), "--model", "models:/shop/1", "--as-of",
                                   "2024-04-01", "--shadow", "models:/shop/1"])
    assert res.exit_code == 2 and "production --model itself" in res.output, res.output
    assert _bytes(prod) == after


def test_drift_stop_ignores_tenure_growing_with_the_calendar_but_catches_a_broken_feed(loop, tmp_path):
    tmp, good, cfg, ds, url = loop
    man = json.loads((tmp / "out" / "shadow_scores" / f"as_of={AS_OFS[-1]}" / "_manifest.json").read_text())
    drift = man["drift"]
    # four months after the training snapshot every tenure is four months longer: above the stop,
    # reported, and the run was written all the same
    assert drift["calendar"]["tx_tenure_days"] > cfg.scoring.drift_stop
    assert drift["warnings"]["tx_tenure_days"] == drift["calendar"]["tx_tenure_days"]
    assert drift["stop"] is False and drift["stopped_by"] == {}
    # a broken feed: amounts in cents (x100) stops the same run, naming spend, not tenure
    world = tmp / "world"
    tables = {}
    for name in ("customers", "transactions", "activity", "social", "after_sales"):
        df = pd.read_parquet(world / f"{name}.parquet")
        if name == "transactions":
            df["amount"] = df["amount"] * 100
        df.to_parquet(tmp_path / f"{name}.parquet")
        tables[name] = {"path": f"{name}.parquet"}
    raw = yaml.safe_load(good.read_text())
    raw["data"] = {"tables": tables}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    broken = load_config(tmp_path / "c.yaml")
    with pytest.raises(DriftError) as err:
        from clvml.scoring.job import score

        score(broken, "models:/shop/2", AS_OFS[-1], out=tmp_path / "s")
    assert "tx_spend" in str(err.value) and "tx_tenure_days" not in str(err.value)
    assert not (tmp_path / "s" / f"as_of={AS_OFS[-1]}").exists()


def test_monitor_reports_champion_against_challenger_on_the_same_partitions(loop):
    tmp, good, cfg, ds, url = loop
    from clvml.monitoring import monitor

    r = monitor(cfg, ds=ds)
    direct = compare_champion_challenger(cfg, ds)
    assert r.challenger is not None
    assert r.challenger.decision == direct.decision  # the same comparison as `clvml promote` makes
    pd.testing.assert_frame_equal(r.challenger.runs, direct.runs)
    assert [str(d) for d in r.challenger.runs.as_of] == [str(d) for d in [*AS_OFS, LATE]]
    written = pd.read_parquet(r.out / "challenger.parquet")
    assert len(written) == len(direct.table) and set(written.role) == {"champion", "challenger"}
    assert json.loads((r.out / "challenger_decision.json").read_text())["outcome"] == direct.decision["outcome"]
    page = (r.out / "report.html").read_text()
    assert "<h2>Champion and challenger</h2>" in page and direct.decision["outcome"] in page
    # the production dataset read through its root is still the scores only (monitoring lives in _monitoring)
    assert set(pd.read_parquet(Path(cfg.output.dir) / "scores").columns) >= {"customer_id", "churn_probability"}
