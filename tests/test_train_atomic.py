"""Issue 24.10: the bundle folder, the MLflow run and the registry alias agree, whatever kills a train.

Real processes (the CLI in a subprocess), a real MLflow SQLite store, real signals. The only thing the
driver changes is *when* the process dies: around the step that moves the staged bundle into place.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml
from mlflow import MlflowClient

from clvml.config import load_config
from clvml.tracking import recover_interrupted_runs
from tests.test_demo import write_config

DRIVER = textwrap.dedent("""
    import os, signal, sys
    import clvml.io as io
    mode = sys.argv[1]
    real = io.replace_dir
    def replace_dir(tmp, path):
        if mode == "kill-before-commit":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "term-before-commit":
            os.kill(os.getpid(), signal.SIGTERM)
        out = real(tmp, path)
        if mode == "kill-after-commit":
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    io.replace_dir = replace_dir
    from clvml.cli import main
    sys.argv = ["clvml", "train", "-c", sys.argv[2]]
    main()
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("atomic")
    path = write_config(tmp, name="atom")
    raw = yaml.safe_load(path.read_text())
    raw["data"]["synthetic"]["n_customers"] = 700
    raw["tracking"]["uri"] = f"sqlite:///{tmp / 'mlflow.db'}"
    path.write_text(yaml.safe_dump(raw))
    (tmp / "driver.py").write_text(DRIVER)
    return tmp, path, load_config(path)


def _train(tmp, path, mode):
    return subprocess.run([sys.executable, str(tmp / "driver.py"), mode, str(path)], capture_output=True,
                          text=True, timeout=900, cwd=tmp)


def _state(cfg):
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    folder = json.loads((cfg.output.model_dir / cfg.name / "clvml_meta.json").read_text())["run_id"]
    alias = client.get_model_version_by_alias(cfg.name, cfg.tracking.alias)
    return client, folder, alias.run_id


def test_folder_run_and_alias_agree_after_every_kind_of_death(setup):
    tmp, path, cfg = setup
    ok = _train(tmp, path, "none")
    assert ok.returncode == 0, ok.stderr[-3000:]
    printed = ok.stdout + ok.stderr
    for noise in ("Inferred schema contains integer", "CloudPickle", "All-NaN slice", "Traceback"):
        assert noise not in printed, noise  # no warning a user cannot act on (issue 28.4)
    report = cfg.output.dir / "evaluation" / "report.html"
    assert f"evaluation report: {report}" in printed and report.exists()  # the path, on one line
    auc = re.search(r'"roc_auc": ([0-9.e-]+)', printed).group(1)
    assert len(auc.replace("0.", "", 1)) <= 4, auc  # 4 significant digits, not 16
    assert "held-out cut-off" in report.read_text() and "mean over origins" not in report.read_text()
    client, folder, alias_run = _state(cfg)
    assert folder == alias_run and client.get_run(folder).info.status == "FINISHED"
    good = folder

    # SIGKILL after the alias moved but before the folder was replaced: the run stays RUNNING and the
    # alias points at a model the folder does not hold ...
    died = _train(tmp, path, "kill-before-commit")
    assert died.returncode == -signal.SIGKILL
    client, folder, alias_run = _state(cfg)
    assert folder == good and alias_run != good
    stuck = alias_run
    assert client.get_run(stuck).info.status == "RUNNING"
    # ... until the next train (or anyone) settles it: FAILED, alias back to the previous version
    notes = recover_interrupted_runs(cfg)
    assert len(notes) == 1 and "marked FAILED" in notes[0] and "moved back to version 1" in notes[0]
    client, folder, alias_run = _state(cfg)
    assert folder == alias_run == good
    assert client.get_run(stuck).info.status == "FAILED"
    failed = client.search_model_versions(f"run_id = '{stuck}'")
    assert [v.tags.get("clvml.state") for v in failed] == ["failed"]
    assert recover_interrupted_runs(cfg) == []  # idempotent

    # SIGTERM (a cron/Airflow timeout) at the same point unwinds in-process: FAILED and rolled back
    termed = _train(tmp, path, "term-before-commit")
    assert termed.returncode == 143, termed.stderr[-3000:]
    client, folder, alias_run = _state(cfg)
    assert folder == alias_run == good
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id],
                              order_by=["attributes.start_time DESC"], max_results=1)
    assert runs[0].info.status == "FAILED" and runs[0].info.run_id != good
    assert not [p for p in cfg.output.model_dir.iterdir() if p.name.startswith(".atom.")]  # staging removed

    # SIGKILL right after the folder was replaced: everything was committed but the run's end
    late = _train(tmp, path, "kill-after-commit")
    assert late.returncode == -signal.SIGKILL
    client, folder, alias_run = _state(cfg)
    assert folder == alias_run != good
    assert client.get_run(folder).info.status == "RUNNING"
    notes = recover_interrupted_runs(cfg)
    assert len(notes) == 1 and "marked FINISHED" in notes[0]
    assert client.get_run(folder).info.status == "FINISHED"
