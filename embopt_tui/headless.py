"""``--no-ui``: run a session with progress on stdout, then the results table.

On a terminal, Rich progress bars per experiment (similarity, steps/s, ETA);
otherwise (nohup, a pipe, a log file) plain timestamped lines, at most one
progress line every few seconds plus one per finished experiment.

The engine runs in a worker thread so the main thread is always free to take
signals: SIGINT, SIGTERM and SIGHUP ask the engine to stop between steps (the
current experiment is saved as interrupted); a second one forces the exit.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from embopt_tui.cluster import worker_line
from embopt_tui.format import STATUS_GLYPHS, STATUS_STYLES, out_of_domain  # the dashboard's marks, no Textual
from engine import events as ev
from engine.run.session import Session
from engine.rundir import report
from engine.rundir.columns import number, uses
from engine.rundir.fold import WORKER_EVENTS, ExperimentProgress, RunProgress
from engine.text import printable

PROGRESS_EVERY = 5.0  # seconds between plain progress lines
ABORT_WAIT_S = 1.0  # a forced exit waits this long for the progress bars to close cleanly
SHOW_CURSOR = b"\x1b[?25h"
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def run_headless(session: Session, out: TextIO | None = None) -> str:
    """Run to the end; returns the run's final status (done, failed, interrupted)."""
    out = out or sys.stdout
    view: PlainView | RichView = RichView(out) if out.isatty() else PlainView(out)
    session.subscribe(view.on_event)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = session.run()
        except BaseException as err:  # reported below, in the main thread
            outcome["error"] = err
            outcome["trace"] = traceback.format_exc()

    worker = threading.Thread(target=work, name="engine", daemon=True)
    progress = session.store.progress

    def loading() -> bool:
        return worker.is_alive() and progress.backend is None and not progress.running

    restore = install_stop_signals(session, view.say, view.abort, loading)
    try:  # the handlers stay until the table is out: a late Ctrl+C still means "exit 130 now"
        try:
            worker.start()
            while worker.is_alive():
                worker.join(0.2)  # short waits: signal handlers run between them
        except StoppedWhileLoading:  # nothing ran: end now rather than after the imports (the thread is a daemon)
            session.store.emergency_flush()
        finally:
            _quietly(view.close)
        results = session.store.results()
        status = str(results["status"])
        if "error" in outcome:
            if session.store.fault is None:  # a full disk is one line, which the command prints
                _quietly(lambda: print(outcome["trace"].rstrip(), file=sys.stderr))
            status = ev.FAILED if status == "running" else status
        _quietly(lambda: view.final(report.Run(str(session.run_dir), results)))
        return status
    finally:
        restore()


class StoppedWhileLoading(Exception):
    """Raised in the main thread by the first stop signal while the models still load."""


def install_stop_signals(
    session: Session,
    say: Callable[[str], None],
    abort: Callable[[], None] = lambda: None,
    loading: Callable[[], bool] = lambda: False,
) -> Callable[[], None]:
    """First signal: stop between steps.

    Second: flush what can be flushed, give the terminal back (``abort``), exit 130 now.
    """

    def handler(signum: int, frame: Any) -> None:
        first = session.steering.request_stop() == 1
        if first and loading():
            # Still loading the models (an import can take seconds): nothing runs, so nothing is lost by ending now.
            _quietly(lambda: say(f"{signal.Signals(signum).name}: stopped while loading the models; nothing had run"))
            raise StoppedWhileLoading
        if first:
            name = signal.Signals(signum).name
            _quietly(
                lambda: say(f"{name}: stopping after the current step (saved as interrupted); again to force exit")
            )
            return
        session.store.emergency_flush(timeout=1.0)
        try:
            abort()
        except Exception:  # exiting anyway: a half-closed display must not keep the process alive
            pass
        os._exit(130)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def _quietly(write: Callable[[], None]) -> None:
    """Output after SIGHUP (SSH dropped) or into a closed pipe fails: the run directory is what counts."""
    try:
        write()
    except OSError:
        pass


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def _eta(running: list[ExperimentProgress]) -> str:
    """Time until the slowest of the running experiments finishes."""
    left = [(x.total - x.step) / x.steps_per_s for x in running if x.steps_per_s]
    if not left:
        return "-"
    seconds = int(max(left))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


ERROR, WARNING = "error", "warning"


def log_line(event: ev.Event) -> tuple[str, str | None] | None:
    """The line a log shows for an event, and its severity (None, WARNING or ERROR); None for no line.

    Both headless views print these; progress (bars or throttled lines) is each view's own.
    """
    if isinstance(event, ev.RunStarted):
        return f"{'resuming' if event.resumed else 'run'} {event.run_dir} ({len(event.experiments)} experiments)", None
    if isinstance(event, ev.BackendReady):
        return f"backend {event.backend} on {event.device} (dim {event.dim}) ready in {event.seconds:.1f}s", None
    if isinstance(event, ev.BackendFailed):
        return f"backend failed: {event.error}", ERROR
    if isinstance(event, ev.BankLoading) and event.done >= event.total:
        if event.uncached:
            return f"bank {event.bank}: {event.total:,} sentences, encoded, not cached: {event.uncached}", WARNING
        how = "read from the cache" if event.cached else "encoded and cached"
        return f"bank {event.bank}: {event.total:,} sentences, {how}", None
    if isinstance(event, ev.BatchLimit):
        return event.reason, None
    if isinstance(event, ev.ExperimentStarted) and (not event.batch or event.name == event.batch[0]):
        return f"running {', '.join(event.batch or (event.name,))}", None
    if isinstance(event, ev.ExperimentFinished):
        return finished_line(event), None
    if isinstance(event, ev.ConfigRejected):
        return f"config change ignored: {event.error}", WARNING
    if isinstance(event, ev.StoryChecked) and event.out_of_domain:
        return f"story {event.story}: {out_of_domain(event)}", WARNING
    if isinstance(event, WORKER_EVENTS):
        return worker_line(event), None
    if isinstance(event, ev.RunFinished):
        return f"run {event.status}: {event.run_dir}", None
    return None


def finished_line(event: ev.ExperimentFinished) -> str:
    """What ended and what it found: the scores, the best real sentence whole, and the objective's own number."""
    r = event.result
    if event.status == ev.DONE:
        if uses(r, "init"):
            gain = number(r.get("improvement"), signed=True)
            scores = [f"sim {number(r.get('init_sim'))} -> {number(r.get('final_sim'))} ({gain})"]
        else:
            scores = [f"sim {number(r.get('final_sim'))}"]
        if r.get("text") is not None:
            fluency = f" (nll {number(r.get('text_nll'))})" if r.get("text_nll") is not None else ""
            scores.append(f'text {number(r.get("text_sim"))}{fluency} "{r.get("text")}"')
        if r.get("objective") not in (None, "cosine") and r.get("final_loss") is not None:
            scores.append(f"{r.get('objective')} {number(r.get('init_loss'))} -> {number(r.get('final_loss'))}")
        oracle_nll = f" (nll {number(r.get('oracle_nll'))})" if r.get("oracle_nll") is not None else ""
        scores.append(f"oracle {number(r.get('oracle_sim'))}{oracle_nll}")
        if r.get("roundtrip_sim") is not None:
            scores.append(f"round-trip {number(r.get('roundtrip_sim'))}")
        line = f"done {event.name}: " + ", ".join(scores)
    elif event.status == ev.FAILED:
        line = f"failed {event.name}: {r.get('error') or 'unknown error'}"
    else:
        line = f"{event.status} {event.name} at step {r.get('steps_done', '?')}/{r.get('steps', '?')}"
    seconds = r.get("seconds")
    return line + (f" in {seconds:.1f}s" if isinstance(seconds, (int, float)) else "")


class PlainView:
    """Timestamped lines for logs and pipes; progress throttled to one line per PROGRESS_EVERY."""

    def __init__(self, out: TextIO, every: float = PROGRESS_EVERY) -> None:
        self.out = out
        self.every = every
        self.progress = RunProgress()
        self._last = 0.0
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            print(f"[{_clock()}] {printable(text)}", file=self.out, flush=True)

    def on_event(self, event: ev.Event) -> None:
        self.progress.apply(event)
        line = log_line(event)
        if line is not None:
            self.say(line[0])
        elif isinstance(event, ev.BackendLoading):
            stage = "" if event.stage == "loading models" else f": {event.stage}"
            self._throttled(f"loading models{stage} ({event.fraction:.0%})")
        elif isinstance(event, ev.BankLoading):
            self._throttled(f"encoding bank {event.bank}: {event.done:,}/{event.total:,} sentences")
        elif isinstance(event, ev.Step) and self._due():
            # every step of every experiment comes here: the line is built only when it is shown
            stepping = [x for x in self.progress.experiments.values() if x.result is None and x.sims]
            rate = max(x.steps_per_s or 0.0 for x in stepping)
            parts = "; ".join(f"{x.name} {x.step}/{x.total} sim {x.sims[-1]:.3f}" for x in stepping)
            self.say(f"{rate:.1f} steps/s, ETA {_eta(stepping)} | {parts}")

    def _due(self) -> bool:
        """True (and the clock restarts) when a throttled line may be shown now."""
        now = time.monotonic()
        if now - self._last < self.every:
            return False
        self._last = now
        return True

    def _throttled(self, text: str) -> None:
        if self._due():
            self.say(text)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self.out.flush()

    def final(self, run: report.Run) -> None:
        self.out.write(
            printable(f"\nresults ({run.data.get('status')}): {report.status_counts(run.experiments)}\n", newlines=True)
        )
        self.out.write(report.format_table([run]))
        self.out.write(f"run directory: {printable(run.path)}\n")
        self.out.flush()


class RichView:
    """Progress bars on a terminal; the Rich import waits until a run needs it."""

    QUIET = (ev.ExperimentStarted, ev.RunFinished)  # the bars show these
    STYLES = {WARNING: "yellow", ERROR: "red"}

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.escape = escape  # event texts may hold [brackets]

        self.console = Console(file=out)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("sim {task.fields[sim]}"),
            TextColumn("{task.fields[rate]} steps/s"),
            # The engine's rate, not Rich's own estimate: that one counts the time a run spent paused or stopped.
            TextColumn("ETA {task.fields[eta]}"),
            console=self.console,
            refresh_per_second=4,  # each refresh renders every bar while holding the GIL the engine needs
        )
        self.run = RunProgress()
        self._tasks: dict[str, Any] = {}
        self._loading: Any = None
        self._bank: Any = None
        self.progress.start()

    def say(self, markup: str) -> None:
        self.progress.console.print(f"[dim]{_clock()}[/] {printable(markup)}", markup=True, highlight=False)

    def _task(self, name: str, total: int) -> Any:
        if name not in self._tasks:
            self._tasks[name] = self.progress.add_task(printable(name), total=total, sim="-", rate="-", eta="-")
        return self._tasks[name]

    def on_event(self, event: ev.Event) -> None:
        self.run.apply(event)
        line, escape = log_line(event), self.escape
        if line is not None and not isinstance(event, self.QUIET):
            text, severity = line
            head, _, tail = text.partition(": ")
            if severity is not None:  # the lead in colour, the rest as written (it may hold [brackets])
                self.say(f"[{self.STYLES[severity]}]{escape(head)}:[/] {escape(tail)}")
            else:
                self.say(escape(text))
        p = self.progress
        if isinstance(event, ev.BankLoading):
            if event.done < event.total:
                if self._bank is None:
                    self._bank = p.add_task(
                        printable(f"encoding bank {event.bank}"), total=event.total, sim="-", rate="-", eta="-"
                    )
                p.update(self._bank, completed=event.done)
            elif self._bank is not None:
                p.remove_task(self._bank)
                self._bank = None
        elif isinstance(event, ev.BackendLoading):
            if self._loading is None:
                self._loading = p.add_task("loading models", total=1.0, sim="-", rate="-", eta="-")
            p.update(self._loading, completed=event.fraction, description=printable(f"loading: {event.stage}"))
        elif isinstance(event, (ev.BackendReady, ev.BackendFailed)):
            if self._loading is not None:
                p.remove_task(self._loading)
                self._loading = None
        elif isinstance(event, ev.ExperimentStarted):
            self._task(event.name, event.steps)
        elif isinstance(event, ev.Step):
            x = self.run.experiments[event.name]
            p.update(
                self._task(x.name, x.total),
                completed=x.step,
                total=x.total,
                sim=f"{event.sim:.3f}",
                rate=f"{event.steps_per_s:.1f}",
                eta=_eta([x]),
            )
        elif isinstance(event, ev.ExperimentFinished) and event.name in self._tasks:
            mark = f"[{STATUS_STYLES.get(event.status, 'yellow')}]{STATUS_GLYPHS.get(event.status, '■')}[/]"
            p.update(self._tasks[event.name], description=f"{mark} {escape(printable(event.name))}", eta="-")

    def close(self) -> None:
        self.progress.stop()

    def abort(self) -> None:
        """The forced exit: end the bars' line and show the cursor again, as close() would, in bounded time.

        The signal may land while a thread holds the display's lock (the refresh
        thread writing a frame, or the main thread inside close()): close() then
        runs in a helper thread, and past the wait the sequences are written raw.
        """
        closer = threading.Thread(target=lambda: _quietly(self.close), daemon=True)
        closer.start()
        closer.join(ABORT_WAIT_S)
        if closer.is_alive():
            _quietly(self.console.file.flush)
            os.write(self.console.file.fileno(), b"\r\n" + SHOW_CURSOR + b"\n")

    def final(self, run: report.Run) -> None:
        # The plain table fitted to the terminal (free text narrowed or left out first), and past
        # that cropped rather than squeezed: its columns stay aligned; results.md holds every character.
        counts = report.status_counts(run.experiments)
        self.console.print(printable(f"results ({run.data.get('status')}): {counts}"), style="bold", highlight=False)
        for line in report.format_table([run], width=self.console.width).splitlines():
            if line.startswith(("Best", f"{run.label}: Best")):
                break  # the Best lines (wrapped to the width, continuations indented) are printed below, whole
            self.console.print(
                line,
                style="bold" if line.startswith("* ") else None,
                no_wrap=True,
                overflow="ellipsis",
                crop=True,
                highlight=False,
                markup=False,
            )
        for line in report.best_lines(run, markdown=False):
            self.console.print(line, highlight=False)
        self.console.print(f"run directory: {printable(run.path)}", highlight=False)
