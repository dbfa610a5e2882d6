"""``clvml promote``: move the production registry alias to a challenger that won, or back.

The production model is the registered model ``<name>`` under the alias ``promote.alias`` (default
``champion``; production scores with ``models:/<name>@champion``). :func:`promote` compares champion and
challenger on matured partitions (:func:`clvml.monitoring.challenger.compare_champion_challenger`) and
moves the alias to the challenger's registry version only when the outcome is ``promote``, or with
``force``. :func:`rollback` moves it back to the version it pointed to before the promotion that made
the current champion.

Every decision taken on a comparison, moved or not, is an MLflow run (``clvml.job=promote``) in the
config's experiment, with the tags ``clvml.action`` (promote / rollback), ``clvml.promote.alias``,
``.from``, ``.to``, ``.forced``, ``.outcome``, ``.moved`` and the artifact ``evidence.json`` (the decision,
one row per as_of, the tidy metric table). The alias is moved inside that run, after the evidence is
logged; ``clvml.promote.moved=true`` is set only once it has moved, so a run that failed half-way is
never taken for a move. The new champion version is tagged ``clvml.champion_since`` (the run id) and,
when forced, ``clvml.forced=true``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clvml.config import Config
from clvml.data.dataset import Dataset
from clvml.errors import (
    ChallengerLosesError,
    ConfigError,
    ModelNotFoundError,
    NoShadowRunsError,
    NotEnoughRunsError,
)
from clvml.monitoring.challenger import Comparison, compare_champion_challenger

Progress = Callable[[str], None]


@dataclass
class PromoteResult:
    """What ``promote``/``rollback`` did. ``moved`` is False when the alias already pointed there."""

    action: str  # "promote" or "rollback"
    alias: str
    from_version: str | None
    to_version: str | None
    moved: bool
    forced: bool
    run_id: str | None
    decision: dict[str, Any] | None
    comparison: Comparison | None = None


def _client(cfg: Config) -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _registered(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        raise ModelNotFoundError(f"no registered model {name!r} in the tracking store: train it with "
                                 "`clvml train` (tracking.register_model: true) first") from None


def _version(client: Any, name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        held = sorted((str(v.version) for v in client.search_model_versions(f"name = '{name}'")), key=int)
        raise ModelNotFoundError(f"registered model {name!r} has no version {version} (it holds versions "
                                 f"{', '.join(held) or 'none'})") from None


def _alias(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _challenger_version(client: Any, name: str, decision: dict[str, Any]) -> str:
    """The registry version of ``name`` that wrote the judged shadow partitions."""
    ch = decision["challenger"]
    uri = str(ch.get("uri") or "")
    same_model = uri.startswith(f"models:/{name}@") or uri.startswith(f"models:/{name}/")
    if ch.get("registry_version") and same_model:  # a version number of another registered model is not one of ours
        return str(ch["registry_version"])
    if ch.get("run_id"):
        found = [str(v.version) for v in client.search_model_versions(f"run_id = '{ch['run_id']}'")
                 if v.name == name]
        if found:
            return max(found, key=int)
    raise ModelNotFoundError(
        f"the challenger that wrote the shadow partitions ({ch.get('uri')}, model version "
        f"{ch.get('model_version')}) is not a version of the registered model {name!r}: score the shadow "
        f"with a registered model (models:/{name}@candidate, or the runs:/ URI of a `clvml train` run that "
        "registered it), or name the version with --version")


def _evidence(comparison: Comparison | None, decision: dict[str, Any] | None, extra: dict[str, Any]) -> dict:
    out: dict[str, Any] = {"decision": decision, **extra}
    if comparison is not None:
        out["runs"] = comparison.runs.astype(object).where(comparison.runs.notna(), None).to_dict("records")
        out["metrics"] = comparison.table.astype(object).where(comparison.table.notna(), None).to_dict("records")
    return out


def _record(cfg: Config, action: str, tags: dict[str, str], evidence: dict[str, Any],
            move: Callable[[Any, str], None] | None) -> str:
    """One MLflow run holding the evidence; ``move`` (the alias change) runs inside it, last."""
    import mlflow

    from clvml import tracking

    all_tags = {"clvml.job": "promote", "clvml.action": action, "clvml.promote.moved": "false", **tags}
    with tracking.start_run(cfg, run_name=f"{action}-{cfg.name}", tags=all_tags) as run:
        tracking.log_json(evidence, "evidence.json")
        decision = evidence.get("decision") or {}
        tracking.log_metrics({k: v for k, v in (("champion_mean", decision.get("champion_mean")),
                                                ("challenger_mean", decision.get("challenger_mean")),
                                                ("mean_improvement", decision.get("mean_improvement")),
                                                ("matured_runs", decision.get("runs")))
                              if v is not None})
        if move is not None:
            move(_client(cfg), run.info.run_id)
            mlflow.set_tag("clvml.promote.moved", "true")
        return run.info.run_id


def promote(cfg: Config, *, force: bool = False, version: str | None = None, ds: Dataset | None = None,
            progress: Progress = lambda _: None) -> PromoteResult:
    """Move ``promote.alias`` of the registered model ``cfg.name`` to the challenger when it wins.

    Parameters
    ----------
    cfg
        Config: tracking store, ``promote`` rule, data and the two score roots.
    force
        Move the alias whatever the comparison says (recorded as ``clvml.promote.forced=true`` on the
        run and ``clvml.forced=true`` on the version). With ``version``, needs no shadow partitions
        (e.g. to name the first champion).
    version
        The challenger's registry version (default: the version that wrote the most recently written
        shadow partition).
    ds
        Already loaded data (default: read the config's sources).

    Raises
    ------
    NoShadowRunsError, NotEnoughRunsError, ChallengerLosesError
        Exit 20, 21, 22: the alias is unchanged (21 and 22 are recorded as runs with the evidence).
    ModelNotFoundError
        No such registered model or version, or a challenger that is not a registered version (exit 9).
    """
    from clvml.tracking import using_tracking

    if not cfg.tracking.enabled:
        raise ConfigError(["clvml promote moves an MLflow registry alias, but tracking.enabled is false"])
    name, alias = cfg.name, cfg.promote.alias
    with using_tracking(cfg):
        client = _client(cfg)
        _registered(client, name)
        run_id = _version(client, name, version).run_id if version is not None else None
        comparison = None
        try:
            comparison = compare_champion_challenger(cfg, ds, challenger_version=version,
                                                     challenger_run_id=run_id, progress=progress)
        except NoShadowRunsError:
            if not (force and version is not None):
                raise
            progress("no shadow partitions: promoting by --force --version without a comparison")
        decision = comparison.decision if comparison is not None else None
        target = str(version) if version is not None else _challenger_version(client, name, decision)
        _version(client, name, target)
        current = _alias(client, name, alias)
        if current == target:
            progress(f"version {target} already holds the alias {alias!r}: nothing to move")
            return PromoteResult("promote", alias, current, target, False, force, None, decision, comparison)
        outcome = decision["outcome"] if decision else "no_comparison"
        tags = {"clvml.promote.alias": alias, "clvml.promote.from": current or "", "clvml.promote.to": target,
                "clvml.promote.forced": str(bool(force)).lower(), "clvml.promote.outcome": outcome,
                "clvml.promote.metric": cfg.promote.metric}
        evidence = _evidence(comparison, decision, {"registered_model": name, "alias": alias,
                                                    "from_version": current, "to_version": target,
                                                    "forced": force, "at": dt.datetime.now(dt.UTC).isoformat()})
        if outcome != "promote" and not force:
            rid = _record(cfg, "promote", tags, evidence, None)
            msg = (f"version {target} was not promoted; alias {alias!r} stays on "
                   f"{current or 'nothing'} (evidence: MLflow run {rid}): {decision['reason']}")
            if outcome == "insufficient":
                raise NotEnoughRunsError(msg + ". Score more as_ofs with --shadow and wait for them to mature, "
                                         "lower promote.min_runs, or use --force")
            raise ChallengerLosesError(msg + ". Keep the champion, or use --force to promote anyway")

        def move(client: Any, run_id: str) -> None:
            client.set_registered_model_alias(name, alias, target)
            client.set_model_version_tag(name, target, "clvml.champion_since", run_id)
            if force:
                client.set_model_version_tag(name, target, "clvml.forced", "true")

        rid = _record(cfg, "promote", tags, evidence, move)
        how = " (forced)" if force else ""
        progress(f"alias {alias!r} of {name} moved from {current or 'nothing'} to version {target}{how}; "
                 f"evidence: MLflow run {rid}")
        return PromoteResult("promote", alias, current, target, True, force, rid, decision, comparison)


def _last_promotion(client: Any, cfg: Config, alias: str) -> Any:
    """The newest finished promote run that moved ``alias`` and that no rollback has undone yet (each
    rollback undoes one promotion, so repeated rollbacks walk back through the champions)."""
    import mlflow

    exp = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id], "attributes.status = 'FINISHED' and tags.`clvml.job` = 'promote' and "
        f"tags.`clvml.promote.moved` = 'true' and tags.`clvml.promote.alias` = '{alias}'",
        order_by=["attributes.start_time DESC"], max_results=10_000)
    undone = {r.data.tags.get("clvml.promote.undoes") for r in runs if r.data.tags.get("clvml.action") == "rollback"}
    for r in runs:
        if r.data.tags.get("clvml.action") == "promote" and r.info.run_id not in undone:
            return r
    return None


def rollback(cfg: Config, *, progress: Progress = lambda _: None) -> PromoteResult:
    """Move ``promote.alias`` back to the version it pointed to before the newest promotion not rolled
    back yet (which must have moved it to the current champion); repeated rollbacks walk back through
    the earlier champions.

    Raises
    ------
    ModelNotFoundError
        No registered model, no alias, no promotion left to undo, an alias moved by hand since, a
        promotion that had no earlier champion, or an earlier version since deleted (exit 9).
    """

    from clvml.tracking import using_tracking

    if not cfg.tracking.enabled:
        raise ConfigError(["clvml promote --rollback moves an MLflow registry alias, but tracking.enabled is false"])
    name, alias = cfg.name, cfg.promote.alias
    with using_tracking(cfg):
        client = _client(cfg)
        _registered(client, name)
        current = _alias(client, name, alias)
        if current is None:
            raise ModelNotFoundError(f"registered model {name!r} has no alias {alias!r}: there is no champion "
                                     "to roll back")
        made = _last_promotion(client, cfg, alias)
        if made is None:
            raise ModelNotFoundError(f"no clvml promote run of experiment {cfg.tracking.experiment!r} that is not "
                                     f"rolled back yet moved the {alias!r} of {name}: nothing to roll back to. "
                                     "Name the version: clvml promote --force --version V")
        if made.data.tags.get("clvml.promote.to") != current:
            raise ModelNotFoundError(
                f"the alias {alias!r} points to version {current}, but the last clvml promotion (MLflow run "
                f"{made.info.run_id}) moved it to {made.data.tags.get('clvml.promote.to')}: it was moved by "
                "hand since, so the previous champion is unknown. Name it: clvml promote --force --version V")
        previous = made.data.tags.get("clvml.promote.from") or ""
        if not previous:
            raise ModelNotFoundError(f"version {current} became the {alias!r} of {name} with no earlier champion "
                                     f"(MLflow run {made.info.run_id}): nothing to roll back to")
        _version(client, name, previous)
        tags = {"clvml.promote.alias": alias, "clvml.promote.from": current, "clvml.promote.to": previous,
                "clvml.promote.forced": "false", "clvml.promote.outcome": "rollback",
                "clvml.promote.undoes": made.info.run_id}
        evidence = _evidence(None, None, {"registered_model": name, "alias": alias, "from_version": current,
                                          "to_version": previous, "undoes_run": made.info.run_id,
                                          "at": dt.datetime.now(dt.UTC).isoformat()})
        rid = _record(cfg, "rollback", tags, evidence,
                      lambda c, _: c.set_registered_model_alias(name, alias, previous))
        progress(f"alias {alias!r} of {name} moved back from version {current} to {previous}; "
                 f"MLflow run {rid}")
        return PromoteResult("rollback", alias, current, previous, True, False, rid, None)
