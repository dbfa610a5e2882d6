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

On a terminal progress is shown as ``  12.3s message``, and long steps (feature batches, tuning
trials, scoring chunks) as a bar with the count and an ETA; otherwise each progress step is one JSON
line on stderr (``{"t": 12.3, "event": "..."}``, plus ``step``, ``done``, ``total`` and ``eta_s`` for a
counted item), for schedulers to parse — no bars and no wrapping in logs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

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


class Progress:
    """A progress callback: ``progress(message)`` for a step, ``progress(message, done=, total=,
    step=)`` for one of ``total`` items of a long step (chunks, trials, cut-off batches).

    On a terminal a plain message is a timed line (``  12.3s message``) and counted items drive one
    progress bar per step with the count and an ETA (:func:`render_bars`); otherwise every call is one
    JSON line on stderr, counted items with ``step``, ``done``, ``total`` and ``eta_s`` (seconds left,
    from the pace so far; null before the first item is done). Pass it where a ``Callable[[str], None]``
    is expected; code that may hold a plain callable reports counts through :func:`count`.
    """

    counts = True  # accepts done/total/step (see count())

    def __init__(self, *, tty: bool | None = None, console: Console | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.start = clock()
        self._console = console
        self.tty = _refresh(err).is_terminal if tty is None else tty
        self._steps: dict[str, float] = {}  # step -> when it started
        self._done: dict[str, int] = {}  # step -> items done at the last call
        self._last = self.start  # time of the previous call: where a new step starts
        self._bars: Any = None  # rich.progress.Progress while a bar is shown
        self._tasks: dict[str, Any] = {}

    def eta(self, step: str, done: int, total: int) -> float | None:
        """Seconds left for ``step`` at the pace of its ``done`` items so far (None before the first)."""
        if done < self._done.get(step, 0):  # the step runs again (another model's rounds): a new start
            self._steps[step] = self._last
            if step in self._tasks and self._bars is not None:
                self._bars.reset(self._tasks[step], total=total)
        self._done[step] = done
        started = self._steps.setdefault(step, self._last)
        if done <= 0:
            return None
        return max(0.0, (self._clock() - started) / done * max(total - done, 0))

    def __call__(self, msg: str, *, done: int | None = None, total: int | None = None,
                 step: str | None = None) -> None:
        t = self._clock() - self.start
        eta = None
        if done is not None and total is not None:
            step = step or str(msg).split(":")[0]
            eta = self.eta(step, done, total)
            if done >= total:  # over: the next run of this step starts afresh
                self._steps.pop(step, None)
                self._done.pop(step, None)
        if not self.tty:  # structured log lines for schedulers
            line: dict[str, Any] = {"t": round(t, 2), "event": str(msg)}
            if step is not None:
                line.update(step=step, done=done, total=total, eta_s=None if eta is None else round(eta, 1))
            print(json.dumps(line), file=sys.stderr, flush=True)
        elif step is not None:
            self._bar(step, int(done or 0), int(total or 0), eta)
        else:
            self._stop_bars()
            line = Text(f"{t:6.1f}s", style="dim")
            line.append(" " + str(msg))
            (self._console or _refresh(err)).print(line, markup=False, highlight=False, emoji=False)
        self._last = self._clock()

    def _bar(self, step: str, done: int, total: int, eta: float | None) -> None:
        if self._bars is None:
            self._bars = bar_display(self._console or _refresh(err), self._clock)
            self._bars.start()
        if step not in self._tasks:
            self._tasks[step] = self._bars.add_task(step, total=total, eta=eta)
        self._bars.update(self._tasks[step], completed=done, total=total, eta=eta)
        self._bars.refresh()
        if done >= total:  # this step is over: the finished bar stays on screen as one line
            self._stop_bars()

    def _stop_bars(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars, self._tasks = None, {}


def _eta_text(eta: float | None) -> str:
    if eta is None:
        return "ETA --:--"
    s = int(round(eta))
    return f"ETA {s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"ETA {s // 60}:{s % 60:02d}"


def bar_display(console: Console, clock: Callable[[], float] = time.perf_counter) -> Any:
    """A Rich progress display on ``console``: step, bar, ``done/total`` and the ETA of each step
    (the ETA is the task's ``eta`` field, seconds, computed by :class:`Progress`). Refreshed on each
    update only (no background thread)."""
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    class _Eta(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text("done" if task.finished else _eta_text(task.fields.get("eta")), style="cyan")

    return RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Eta(),
                        TimeElapsedColumn(), console=console, auto_refresh=False, transient=False, get_time=clock)


def count(progress: Callable[..., None], msg: str, *, done: int, total: int, step: str,
          plain: bool = True) -> None:
    """Report item ``done`` of ``total`` of ``step`` through ``progress``: with the counts when it is a
    :class:`Progress`, as the plain message otherwise (any ``Callable[[str], None]``; nothing when
    ``plain`` is False: items only worth a bar)."""
    if getattr(progress, "counts", False):
        progress(msg, done=done, total=total, step=step)
    elif plain:
        progress(msg)


_ACTIVE: ContextVar[Callable[..., None] | None] = ContextVar("clvml_progress", default=None)


@contextmanager
def reporting(progress: Callable[..., None]) -> Iterator[None]:
    """Make ``progress`` the callback that deep steps without one of their own (LightGBM's boosting
    rounds) report to, within this block (:func:`active`)."""
    token = _ACTIVE.set(progress)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> Callable[..., None] | None:
    """The callback set by the innermost :func:`reporting` block, if any."""
    return _ACTIVE.get()


def progress() -> Progress:
    """A progress callback for the command line: timed lines and bars on a terminal, one JSON object
    per line otherwise (see :class:`Progress`)."""
    return Progress()
