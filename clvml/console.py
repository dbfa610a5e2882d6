"""What the command line prints, and how.

Two rules hold for every line the CLI writes:

* **User data is printed verbatim.** Customer ids, paths, column names, config values and error
  messages (which quote all of these) never go through Rich markup: ``[/foo]`` would crash Rich,
  ``[bold]x`` would be shown as a bold ``x``, a hint such as ``[your values]`` would vanish. Only the
  fixed decorations chosen here (``error:`` in red, a bold heading) are styled, as :class:`rich.text.Text`
  styles, never as markup.
* **Logs are not wrapped.** When a stream is not a terminal (cron, Airflow, a pipe to a file), lines
  are written whole — Rich would otherwise wrap at 80 columns and cut paths and run ids in two. On a
  terminal Rich wraps to the terminal's width as usual.

On a terminal progress is shown as ``  12.3s message``; otherwise each progress step is one JSON line
on stderr (``{"t": 12.3, "event": "..."}``), for schedulers to parse.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.text import Text


def _console(stderr: bool) -> Console:
    con = Console(stderr=stderr, highlight=False)
    # not a terminal: no wrapping (the width would be 80 columns); the file is looked up when printing,
    # so is_terminal here describes the stream the process was started with
    con.soft_wrap = not con.is_terminal
    return con


#: messages, progress and errors (stderr)
err = _console(stderr=True)
#: results meant for pipes (stdout)
out = _console(stderr=False)


def _refresh(con: Console) -> Console:
    """Re-check the stream (tests and embedding code swap ``sys.stderr``/``sys.stdout``)."""
    con.soft_wrap = not con.is_terminal
    return con


def say(text: object, *, style: str | None = None, stderr: bool = True) -> None:
    """Print ``text`` exactly as given (no markup, no highlighting, no wrapping in logs), optionally in
    one Rich ``style`` (e.g. ``"green"``) applied to the whole line."""
    con = _refresh(err if stderr else out)
    con.print(Text(str(text), style=style or ""), markup=False, highlight=False, emoji=False)


def say_parts(*parts: tuple[str, str | None] | str, stderr: bool = True) -> None:
    """Print one line assembled from plain strings and ``(text, style)`` pairs, every text verbatim."""
    line = Text()
    for p in parts:
        if isinstance(p, tuple):
            line.append(p[0], style=p[1] or "")
        else:
            line.append(str(p))
    con = _refresh(err if stderr else out)
    con.print(line, markup=False, highlight=False, emoji=False)


def error(message: object) -> None:
    """``error: <message>`` on stderr, the message verbatim."""
    say_parts(("error:", "bold red"), " " + str(message))


def progress() -> Callable[[str], None]:
    """A progress callback: timed lines on a terminal, one JSON object per line otherwise."""
    start = time.perf_counter()
    tty = _refresh(err).is_terminal

    def show(msg: str) -> None:
        t = time.perf_counter() - start
        if tty:
            say_parts((f"{t:6.1f}s", "dim"), " " + str(msg))
        else:  # structured log lines for schedulers
            print(json.dumps({"t": round(t, 2), "event": msg}), file=sys.stderr, flush=True)

    return show
