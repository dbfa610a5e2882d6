"""MkDocs hooks: the pages generated from the code itself, at every build.

* ``reference/cli.md``: the command tree of the Typer app ``clvml.cli.app`` (walked through Click),
  every command's help, usage, arguments and options, and the exit codes of ``clvml.errors``;
* ``reference/config.md``: every key of the YAML configuration, walked from the pydantic models of
  ``clvml.config`` (type, default, description);
* ``reference/api.md``: one mkdocstrings entry per public name of ``clvml.__all__``, grouped by the
  module that defines it (``clvml._EXPORTS``);
* ``notebooks/*.ipynb``: the notebooks of the repository (rendered with their stored outputs by
  mkdocs-jupyter; nothing is executed during the build).

Nothing generated is written into ``docs/``: the pages exist only in the build, so they cannot go stale.
"""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


# --------------------------------------------------------------------------------------------- CLI


def _cell(text: str) -> str:
    """Text fit for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _param_row(param: Any, ctx: Any) -> str:
    """One table row: what ``--help`` prints for the parameter (its options, help and default)."""
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    kind = "flag" if getattr(param, "is_flag", False) else getattr(annotation, "__name__", "value").lower()
    if param.param_type_name == "argument":
        names, help_text = f"`{param.name.upper()}`", getattr(param, "help", None) or ""
        kind = f"argument ({kind})"
    else:
        record = param.get_help_record(ctx)
        names = ", ".join(f"`{o.strip()}`" for o in record[0].split(",")) if record else ""
        help_text = record[1] if record else ""
    if param.multiple:
        kind += ", repeatable"
    if param.required:
        kind += ", **required**"
    return f"| {names} | {kind} | {_cell(help_text)} |"


def _command_md(cmd: Any, path: list[str], ctx: Any) -> list[str]:
    title = " ".join(path)
    help_text = inspect.cleandoc(cmd.help or "")
    params = [p for p in cmd.params if not getattr(p, "hidden", False)]
    lines = [f"## `{title}`", ""]
    if help_text:
        lines += [help_text, ""]
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    lines += ["```text", f"{title} {usage}".rstrip(), "```", ""]
    if params:
        lines += ["| argument / option | type | meaning |", "|---|---|---|"]
        lines += [_param_row(p, ctx) for p in params]
        lines.append("")
    if not hasattr(cmd, "list_commands"):
        return lines
    out: list[str] = []
    for name in cmd.list_commands(ctx):
        sub = cmd.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            out += _command_md(sub, [*path, name], sub.context_class(sub, info_name=name, parent=ctx))
    return lines + out


def cli_markdown() -> str:
    """The CLI reference page, from the Click command tree of ``clvml.cli.app``."""
    import typer

    from clvml.cli import app
    from clvml.errors import EXIT_CODES

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="clvml")
    lines = [
        "# Command-line reference",
        "",
        "Generated at every docs build from the Typer application `clvml.cli.app` (walked through its "
        "Click command tree): what `clvml COMMAND --help` prints, as tables. Every command also takes "
        "`--help`.",
        "",
    ]
    body: list[str] = []
    for name in root.list_commands(ctx):
        cmd = root.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        body += _command_md(cmd, ["clvml", name], cmd.context_class(cmd, info_name=name, parent=ctx))
    titles = [h[len("## `"):-1] for h in body if h.startswith("## `")]
    lines += ["Commands: " + ", ".join(f"`{t}`" for t in titles) + ".", "", *body]
    lines += ["## Exit codes", "", "From `clvml.errors.EXIT_CODES`:", "", "| code | meaning |", "|---|---|"]
    lines += [f"| `{code}` | {_cell(text)} |" for code, text in sorted(EXIT_CODES.items())]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ config


def _comments(cls: type) -> dict[str, str]:
    """``#:`` comments written above a field in the class body (Sphinx attribute-comment style)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    found: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above: list[str] = []
            i = node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#:"):
                above.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            if above:
                found[node.target.id] = " ".join(above)
    return found


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type_name(a) for a in args)}]" if args else name
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _models_in(tp: Any) -> list[type]:
    from pydantic import BaseModel

    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _models_in(a)]


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return ""
    else:
        value = field.default
    if value is PydanticUndefined:
        return ""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return "(section defaults)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict) and len(repr(value)) > 60:
        return "(see below)" if any(isinstance(v, BaseModel) for v in value.values()) else "(a mapping)"
    if isinstance(value, list | tuple) and any(isinstance(v, BaseModel) for v in value):
        names = [getattr(v, "name", None) for v in value]
        return f"{len(value)} entries" + (f": {', '.join(f'`{n}`' for n in names)}" if all(names) else "")
    if isinstance(value, dt.date | Path):
        value = str(value)
    return f"`{_cell(value if isinstance(value, str | int | float) else repr(value))}`"


def _walk(model: type, prefix: str, rows: list[tuple[str, str, str, str]], seen: tuple) -> None:
    notes = _comments(model)
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        description = field.description or notes.get(name, "")
        rows.append((key, _type_name(field.annotation), _default(field), description))
        for sub in _models_in(field.annotation):
            if sub not in seen:
                origins = {typing.get_origin(field.annotation)} | {
                    typing.get_origin(a) for a in typing.get_args(field.annotation)}
                inner = ".<name>." if dict in origins else "[]." if list in origins else "."
                _walk(sub, f"{key}{inner}", rows, (*seen, sub))


def config_markdown() -> str:
    """The configuration reference page: every key of :class:`clvml.config.Config`, recursively."""
    from clvml.config import Config

    lines = [
        "# Configuration reference",
        "",
        "Generated at every docs build from the pydantic models of `clvml.config` (one module per "
        "section): every key a YAML config may hold, its type, its default and what it means. Unknown "
        "keys are refused with their full path and a suggestion (exit 2); see "
        "[Data contracts and configs](../guide/data.md) for how a config is read. `<name>` stands for "
        "a key of your choosing (a table, a tier).",
        "",
    ]
    notes = _comments(Config)
    plain = [(k, f) for k, f in Config.model_fields.items() if not _models_in(f.annotation)]
    lines += ["## Top-level keys", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {_cell(_type_name(f.annotation))} | {_default(f)} | "
              f"{_cell(f.description or notes.get(k, ''))} |" for k, f in plain]
    lines.append("")
    for section, field in Config.model_fields.items():
        models = _models_in(field.annotation)
        if not models:
            continue
        rows = [(section, _type_name(field.annotation), _default(field), field.description or notes.get(section, ""))]
        _walk(models[0], f"{section}.", rows, (models[0],))
        lines += [f"## `{section}`", ""]
        doc = inspect.cleandoc(models[0].__doc__ or "") if "__doc__" in vars(models[0]) else ""
        if doc:
            lines += [doc.split("\n\n")[0].replace("\n", " "), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{k}` | {_cell(t)} | {d} | {_cell(m)} |" for k, t, d, m in rows]
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- API

_GROUPS = {
    "clvml.config": "Configuration",
    "clvml.datasets": "Data sets and the synthetic world",
    "clvml.data": "Loading and validating data",
    "clvml.engine": "Engines",
    "clvml.features": "Features",
    "clvml.labels": "Labels",
    "clvml.modeling": "Models",
    "clvml.evaluation": "Evaluation",
    "clvml.explain": "Explanations",
    "clvml.analytics": "Analytics and experiments",
    "clvml.scoring": "Scoring",
    "clvml.monitoring": "Monitoring",
    "clvml.errors": "Errors",
}


def api_entries() -> dict[str, list[tuple[str, str]]]:
    """Public names grouped for the API page: group title -> [(name, defining module)]."""
    import clvml

    where = {name: module for module, names in clvml._EXPORTS.items() for name in names}
    missing = [n for n in clvml.__all__ if n != "__version__" and n not in where]
    if missing:
        raise RuntimeError(f"public names without a module in clvml._EXPORTS: {missing}")
    groups: dict[str, list[tuple[str, str]]] = {}
    for name in sorted((n for n in clvml.__all__ if n != "__version__"), key=str.lower):
        module = where[name]
        prefix = next((p for p in sorted(_GROUPS, key=len, reverse=True)
                       if module == p or module.startswith(p + ".")), None)
        title = _GROUPS[prefix] if prefix else module.split(".")[1].capitalize()
        groups.setdefault(title, []).append((name, module))
    order = list(dict.fromkeys(_GROUPS.values()))
    return dict(sorted(groups.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def api_markdown() -> str:
    """The API reference page: one mkdocstrings entry per name of ``clvml.__all__``."""
    import clvml

    lines = [
        "# API reference",
        "",
        f"Every public name of `clvml` {clvml.__version__}, importable from the package root "
        "(`clvml.simulate`, `clvml.ChurnModel`, …); the heading shows the module that defines it. "
        "Generated at every docs build from the numpy-style docstrings.",
        "",
    ]
    for title, entries in api_entries().items():
        lines += [f"## {title}", ""]
        for name, module in entries:
            lines += [f"::: {module}.{name}", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- hooks


def notebook_files() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


@event_priority(100)  # before mkdocs-jupyter wraps every *.ipynb file as a page
def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    files.append(File.generated(config, "reference/cli.md", content=cli_markdown()))
    files.append(File.generated(config, "reference/config.md", content=config_markdown()))
    files.append(File.generated(config, "reference/api.md", content=api_markdown()))
    for nb in notebook_files():  # a real file (not File.generated): mkdocs-jupyter wraps it as a page
        files.append(File(f"{NOTEBOOKS.name}/{nb.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files

