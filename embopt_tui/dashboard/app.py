"""The dashboard: watch, steer and compare a queue live.

Threads (DESIGN.md, "Threads and events"): the engine runs in one background
thread through :class:`engine.run.session.Session`; its events reach the app via
:class:`~embopt_tui.dashboard.messages.EventBridge` and are folded into a
:class:`~embopt_tui.dashboard.state.RunState`; the panels are redrawn from that state on
a 4 Hz timer, so the engine never waits for the screen.

Nothing here imports torch: the engine imports it inside its thread, which is
what puts the dashboard on screen before the models start loading.

``make_app`` raises :class:`engine.spec.SpecError` or
:class:`engine.rundir.store.StoreError` (one line each) before any UI exists, so the
CLI reports bad input exactly as the headless mode does. After ``app.run()``,
``app.return_code`` is the run's exit code: 0 all done, 1 some failed (or the
models did not load), 130 interrupted.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from embopt_tui.dashboard import keys
from embopt_tui.dashboard.messages import EngineDone, EventBridge, EventsPending
from embopt_tui.dashboard.state import RunState
from embopt_tui.dashboard.widgets.decoded import DecodedView
from embopt_tui.dashboard.widgets.queue import QueuePanel
from embopt_tui.dashboard.widgets.results import ResultsTable
from embopt_tui.dashboard.widgets.screens import ConfirmQuit, DetailsScreen, HelpScreen
from embopt_tui.dashboard.widgets.trace import LiveView
from embopt_tui.dashboard.widgets.workers import WorkersLine
from embopt_tui.exit_codes import ExitCode, of_status
from embopt_tui.format import ellipsize, out_of_domain
from engine import events as ev
from engine.run.session import Session
from engine.rundir import report
from engine.spec import SpecError, load_spec
from engine.text import printable

STABLE_ENV = "EMBOPT_TUI_STABLE"  # "1": no timings or paths on screen (snapshot tests)
EXIT_WHEN_DONE_ENV = "EMBOPT_TUI_EXIT_WHEN_DONE"  # "1": close when the queue ends (benchmarks, scripts)
# Panels repaint at most 4 times a second however fast steps come: a frame holds the GIL the engine thread
# needs between torch ops (with 600-step experiments, 10 Hz optimised ~15% slower than headless, 4 Hz within noise).
REDRAW_S = 0.25
PLOT_REDRAW_S = 1.0
CONFIG_POLL_S = 0.5
# SIGINT comes only from kill here: in raw mode Ctrl+C is a key (bound to quit).
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
EXPORTS = (("csv", "export.csv"), ("json", "export.json"), ("markdown", "export.md"))
ENDED_SHOWN = (ev.SKIPPED, ev.FAILED, ev.INTERRUPTED)  # counted beside "done" in the header


def ended_counts(counts: Mapping[str, int]) -> str:
    """How many ended otherwise than done, as " · 1 skipped · 2 failed" ("" when none did)."""
    return "".join(f" · {counts[s]} {s}" for s in ENDED_SHOWN if counts.get(s))


class EmboptApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "embopt-tui"
    BINDINGS = keys.bindings()
    # Textual's own palette entries that ours replace (its "Keys" panel is our help screen).
    REPLACED_SYSTEM_COMMANDS = ("Quit", "Keys")

    def __init__(
        self,
        session: Session,
        *,
        config_path: Path | None,
        exit_when_done: bool = False,
        stable: bool = False,
    ) -> None:
        super().__init__()
        self.session = session
        self.steering = session.steering
        self.config_path = config_path  # watched for live edits (None when resuming)
        self.exit_when_done = exit_when_done
        self.stable = stable
        self.state = RunState.from_spec(str(config_path or ""), session.spec)
        self.state.run_dir = str(session.run_dir)
        if session.resumed:
            self.state.add_finished(session.store.rows())
        self.bridge = EventBridge(self.post_message)
        session.subscribe(self._tap_then_emit)
        self.event_tap: Any = None  # tests: called in the engine thread with each event, before the UI sees it
        self.engine_gate: threading.Event | None = None  # tests: the engine waits for it before starting
        self.engine_thread: threading.Thread | None = None
        self.engine_code: int | None = None
        self.engine_error: str | None = None
        self.quitting = False
        self.forced_exit = False
        self._last_status: Text | None = None
        self._last_run_dir: Text | None = None
        self.narrow = False
        self._signals_installed: list[tuple[Any, int]] = []
        self._dirty = True
        self._plot_drawn = 0.0
        self._followed: str | None = None
        self._offered: tuple[Any, str] | None = None
        self._skipped: list[str] = []  # skipped and not said yet: one note once a frame brings no more
        self._skipped_shown = 0  # the live edit offered to the engine, and why (saved, reload)
        self._following = True
        self._config_mtime = self._mtime()
        self.status_bar = Static(id="status")
        self.workers_line = WorkersLine(id="workers")
        self.queue = QueuePanel(id="queue")
        self.tabs = TabbedContent(id="tabs", initial="live")
        self.trace = LiveView(id="trace", stable=stable)
        self.decoded = DecodedView(id="decoded")
        self.run_dir_line = Static(id="run-dir")
        self.table = ResultsTable(id="table")
        self.curves: Any = None  # the plotext widget, imported and mounted the first time the Plot tab shows

    # --- layout -----------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield self.status_bar
        yield self.workers_line
        with Horizontal(id="main"):
            yield self.queue
            with self.tabs:
                with TabPane("Live", id="live"):
                    yield self.trace
                    yield self.decoded
                with TabPane("Results", id="results"):
                    with Vertical():
                        yield self.run_dir_line
                        yield self.table
                yield TabPane("Plot", id="plot")
        yield Footer()

    def on_mount(self) -> None:
        self._fit_queue(self.size.width)
        self.queue.focus()
        self._redraw()
        self.set_interval(REDRAW_S, self._redraw)
        if self.config_path is not None:
            self.set_interval(CONFIG_POLL_S, self._poll_config)
        self._install_signal_handlers()
        for warning in self.session.store.warnings:  # what --resume found damaged in the run directory
            self.notify(warning, title="Run directory repaired", severity="warning", timeout=15)
        self.start_engine()
        self.bridge.open()

    def start_engine(self) -> None:
        """Start the engine thread (once). Not before mount: its imports would hold up the first frame."""
        if self.engine_thread is None:
            self.engine_thread = threading.Thread(target=self._engine_main, name="embopt-engine", daemon=True)
            self.engine_thread.start()

    def on_resize(self, event: events.Resize) -> None:
        self._fit_queue(event.size.width)

    def _fit_queue(self, width: int) -> None:
        # Wide terminals get full experiment names; below 100 columns the table and plot get the whole width.
        self.narrow = width < 100
        self.queue.styles.width = 34 if self.narrow else 42
        self._fit_tab()

    def _fit_tab(self) -> None:
        # The Results table lists every experiment with its status itself: it gets the whole width, at any size.
        self.queue.display = not (self.tabs.active == "results" or (self.narrow and self.tabs.active == "plot"))
        self._dirty = True

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._fit_tab()

    # --- the engine thread ------------------------------------------------
    def _engine_main(self) -> None:
        code, error = ExitCode.FAILED, None
        try:
            if self.engine_gate is not None:
                self.engine_gate.wait()
            result = self.session.run()
            code = of_status(result.status)
        except BaseException as err:  # shown in the UI; the session already saved what it had
            error = f"{type(err).__name__}: {err}"
        finally:
            self.bridge.emit(EngineDone(code, error))

    def _tap_then_emit(self, event: ev.Event) -> None:
        tap = self.event_tap
        if tap is not None:
            tap(event)
        self.bridge.emit(event)

    def on_events_pending(self, message: EventsPending) -> None:
        self._pump()

    def _pump(self) -> None:
        """Fold every event the engine queued into the state."""
        events = self.bridge.drain()
        if not events:
            return
        for event in events:
            if isinstance(event, EngineDone):
                self._engine_done(event)
                continue
            self.state.apply(event)
            if isinstance(event, ev.ExperimentFinished) and event.status == ev.SKIPPED:
                self._skipped.append(event.name)  # said with the next frame: a batch skipped at once, one note
            elif isinstance(event, ev.BackendFailed):
                self.notify(ellipsize(event.error, 300), title="Model load failed", severity="error", timeout=30)
            elif isinstance(event, ev.ConfigApplied):
                self._applied(event.text)
            elif isinstance(event, ev.ConfigRejected):
                self._rejected(event.error)
            elif isinstance(event, ev.StoryChecked) and event.out_of_domain:
                self.notify(out_of_domain(event), title=f"Story {event.story}", severity="warning", timeout=20)
        self._follow_running()
        self._dirty = True

    def _engine_done(self, message: EngineDone) -> None:
        self.engine_code = message.code
        self.engine_error = printable(message.error) if message.error else None
        self._dirty = True
        self._redraw()
        if message.error:
            self.notify(ellipsize(message.error, 300), title="Engine stopped", severity="error", timeout=30)
        if self.quitting or self.exit_when_done:
            self.exit(message.code, return_code=message.code)
            return
        self.bell()
        best = self.state.best_names
        summary = {
            ExitCode.OK: "Queue finished",
            ExitCode.FAILED: "Queue finished with failures",
            ExitCode.INTERRUPTED: "Queue interrupted",
        }.get(message.code, "Queue ended") + ended_counts(self.state.counts())
        self.notify(
            f"{summary}. Best: {', '.join(sorted(best)) or '—'}\nRun directory: {self._run_dir_text()}",
            title="Done",
            severity="information" if message.code == ExitCode.OK else "warning",
            timeout=15,
        )
        if self.state.results:
            self.action_show_tab("results")

    @property
    def engine_running(self) -> bool:
        return self.engine_thread is not None and self.engine_code is None

    # --- drawing ----------------------------------------------------------
    def _redraw(self) -> None:
        """Repaint what changed since the last frame (each panel skips itself when its data did not)."""
        if not self.status_bar.is_mounted:
            return
        self._pump()
        if self._skipped and len(self._skipped) == self._skipped_shown:  # none more in a frame: the batch is over
            self.notify(f"{', '.join(self._skipped)}: saved as skipped.", title="Skipped")
            self._skipped, self._skipped_shown = [], 0
        self._skipped_shown = len(self._skipped)
        if not self._dirty:
            return
        self._dirty = False
        state = self.state
        best = state.best_names
        status = self._status_text()
        if status != self._last_status:
            self._last_status = status
            self.status_bar.update(status, layout=False)
        self.workers_line.show(state.workers)
        self.queue.show(state, best)
        view = state.experiments.get(self._shown_name() or "")
        self.trace.show(view, state.paused)
        self.decoded.show(view)
        if self.tabs.active == "results" or not state.running:  # a DataTable refill costs the engine GIL time
            self.table.show(state.rows(), best)
        run_dir = Text.assemble(("Run directory: ", "dim"), self._run_dir_text(), ("   e: export", "dim"))
        if run_dir != self._last_run_dir:
            self._last_run_dir = run_dir
            self.run_dir_line.update(run_dir, layout=False)
        now = time.monotonic()
        if self.tabs.active == "plot" and self._ensure_plot():
            if now - self._plot_drawn >= PLOT_REDRAW_S or not state.running:
                self._plot_drawn = now
                self.curves.show(state)
            else:
                self._dirty = True  # draw the plot again once its second is up

    def _ensure_plot(self) -> bool:
        """Mount the plot on first use: plotext stays out of the start-up path. True once it is mounted."""
        if self.curves is None:
            from embopt_tui.dashboard.widgets.plot import CurvesPlot

            self.curves = CurvesPlot(id="curves")
            self.query_one("#plot", TabPane).mount(self.curves)
            self._dirty = True
            return False
        return self.curves.is_mounted

    def _status_text(self) -> Text:
        state = self.state
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(" embopt-tui ", style="bold reverse")
        out.append(f" {state.backend_name} ")
        if state.workers.size:
            out.append(f"· {state.workers.size} worker{'s' * (state.workers.size != 1)} ", style="bold")
        if state.load_error:
            out.append(f" ✗ model load failed: {state.load_error}", style="bold red")
        elif self.engine_error:
            out.append(f" ✗ {self.engine_error}", style="bold red")
        elif state.backend is None and not state.finished:
            loading = state.loading
            fraction = max(0.0, min(1.0, loading.fraction if loading else 0.0))
            bar = "▰" * round(fraction * 10) + "▱" * (10 - round(fraction * 10))
            out.append(f" loading models {bar} {fraction:4.0%} ", style="yellow")
            out.append(loading.stage if loading else "starting", style="dim")
        else:
            counts = state.counts()
            done = f"{counts[ev.DONE]}/{len(state.experiments)}"
            if state.finished:
                style = "bold green" if state.finished == "done" else "bold yellow"
                out.append(f" ■ {state.finished} {done}", style=style)
            else:
                style = "bold cyan"
                out.append(f" ▶ running · {done} done", style=style)
            out.append(ended_counts(counts), style=style)
            if state.bank is not None and not state.finished:
                bank = state.bank
                out.append(f"  encoding bank {bank.bank} {bank.done:,}/{bank.total:,}", style="yellow")
            if self.quitting and self.engine_running:
                out.append("  stopping after this step…", style="bold yellow")
            elif state.paused:
                out.append("  ‖ PAUSED (p resumes)", style="bold yellow")
        return out

    def _run_dir_text(self) -> str:
        if self.stable:
            return "RUNS_DIR/<run>"
        return printable(self.state.run_dir or "—")

    # --- which experiment the Live tab shows ------------------------------
    def _shown_name(self) -> str | None:
        selected = self.queue.selected_name()
        if selected is not None:
            return selected
        running = self.state.running
        return running[0].name if running else None

    def _follow_running(self) -> None:
        """Keep the Live tab on a running experiment, unless the user chose one to look at."""
        followed = self.state.experiments.get(self._followed or "")
        if not self._following or (followed is not None and followed.status == ev.RUNNING):
            return
        running = self.state.running
        if running:
            self._followed = running[0].name
            self.queue.select(self._followed)

    def on_results_table_details(self, event: ResultsTable.Details) -> None:
        self.push_screen(DetailsScreen(event.row))

    def on_queue_panel_highlighted(self, event: QueuePanel.Highlighted) -> None:
        if event.by_user:
            # Moving to another experiment stops the jumping to running ones; moving back resumes it.
            self._following = event.name == self._followed or self._followed is None
        self._dirty = True

    # --- live edits of experiments.toml ----------------------------------
    def _mtime(self) -> float | None:
        if self.config_path is None:
            return None
        try:
            return self.config_path.stat().st_mtime
        except OSError:
            return None

    def _poll_config(self) -> None:
        mtime = self._mtime()
        if mtime is not None and mtime != self._config_mtime:
            self._config_mtime = mtime
            self.reload_config(reason="saved")

    def reload_config(self, reason: str = "reload") -> bool:
        """Offer the config file to the engine; an invalid one is shown and the queue goes on."""
        if self.config_path is None:
            self.notify("Resumed run: the queue comes from its run directory.", severity="warning")
            return False
        try:
            spec = load_spec(self.config_path)
        except SpecError as err:
            self._reject(str(err))
            return False
        except Exception as err:  # whatever an edit holds, the dashboard and its running queue go on
            self._reject(f"{self.config_path}: cannot read: {type(err).__name__}: {err}")
            return False
        if not self.engine_running:
            self.notify("The queue has ended: start embopt-tui again to run the edited file.", severity="warning")
            return False
        if spec.backend != self.session.spec.backend:
            self._reject(f"{self.config_path}: backend: cannot change while running; restart to use it")
            return False
        # Shown once the engine applied it (ConfigApplied), or refused it (ConfigRejected): nothing on screen before.
        self._offered = (spec, reason)
        self.steering.replace_spec(spec)
        return True

    def _reject(self, error: str) -> None:
        if self.engine_running:  # recorded in events.jsonl like the engine's own refusals, and shown from there
            try:
                self.session.emit(ev.ConfigRejected(error=error))
                return
            except ValueError:
                pass  # the run ended and closed events.jsonl meanwhile
        self._rejected(error)

    def _rejected(self, error: str) -> None:
        self.notify(error, title="Config not applied; queue goes on", severity="error", timeout=10)

    def _applied(self, text: str) -> None:
        offered, reason = self._offered or (None, "reload")
        if offered is None or offered.text != text:
            return
        self._offered = None
        self.state.set_spec(offered)
        self.notify(f"{self.config_path.name} {reason}: {len(offered.experiments)} experiments", title="Queue updated")

    def notify(self, message: str, **kwargs: Any) -> None:
        """Every toast: its text (a config error, a file name, an experiment's name) with control characters escaped."""
        super().notify(
            printable(message, newlines=True), **{k: printable(v) if k == "title" else v for k, v in kwargs.items()}
        )

    # --- actions ----------------------------------------------------------
    def action_toggle_pause(self) -> None:
        if not self.engine_running:
            self.notify("The queue is not running.", severity="warning")
            return
        paused = self.steering.toggle_pause()
        self.state.paused = paused  # the engine's Paused event confirms it between steps
        self._dirty = True
        self.notify("Paused between steps: p resumes." if paused else "Resumed.", title="Engine")

    def action_toggle_plot(self) -> None:
        if not self._ensure_plot():
            self.call_after_refresh(self.action_toggle_plot)
            return
        assert self.curves is not None
        self.curves.next_view()
        self.action_show_tab("plot")
        self.curves.show(self.state)

    def action_skip(self) -> None:
        """Skip the experiment selected in the queue, running or pending."""
        name = self.queue.selected_name()
        x = self.state.experiments.get(name or "")
        if x is None or not self.engine_running:
            self.notify("The queue is not running: nothing to skip.", severity="warning")
            return
        if x.status not in (ev.RUNNING, ev.PENDING):
            self.notify(f"{x.name} is {x.status}: only a running or pending one can be skipped.", severity="warning")
            return
        self.steering.request_skip(x.name)
        self.notify(f"Skipping {x.name} ({x.status}).", title="Engine")

    def action_skip_batch(self) -> None:
        """Skip every experiment of the running batch."""
        running = self.state.running
        if not running or not self.engine_running:
            self.notify("Nothing is running to skip.", severity="warning")
            return
        self.steering.request_skip()
        self.notify(f"Skipping the batch: {', '.join(x.name for x in running)}.", title="Engine")

    def action_reload(self) -> None:
        self._config_mtime = self._mtime()
        self.reload_config(reason="reloaded")

    def action_export(self) -> None:
        try:
            written = export_results(self.session, self.state)
        except OSError as err:
            where = err.filename or self.session.run_dir
            self.notify(f"{where}: {err.strerror}", title="Export failed", severity="error")
            return
        self.notify("\n".join(str(p) if not self.stable else p.name for p in written), title="Exported")

    def action_show_run_dir(self) -> None:
        self.notify(self._run_dir_text(), title="Run directory", timeout=15)

    def action_show_tab(self, tab: str) -> None:
        self.tabs.active = tab
        if tab == "results":
            self.table.focus()
        elif tab == "live":
            self.queue.focus()  # the Live tab shows the queue's choice: the arrows (and s) act there
        self._dirty = True

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(keys.help_lines(self.config_name), self.config_path))

    async def action_quit(self) -> None:
        if not self.engine_running:
            self.exit(self.engine_code or 0, return_code=self.engine_code or 0)
            return
        if self.quitting:  # asked twice: stop waiting for the engine
            self.forced_exit = True
            self.exit(ExitCode.INTERRUPTED, return_code=ExitCode.INTERRUPTED)
            return
        if isinstance(self.screen, ConfirmQuit):  # q or ctrl+c again in the dialog: the answer is yes
            self.screen.dismiss(True)
            return
        self.push_screen(ConfirmQuit(), self._confirmed_quit)

    def _confirmed_quit(self, answer: bool | None) -> None:
        if answer:
            self.stop_engine()

    def stop_engine(self) -> None:
        """Stop between steps; the app exits when the engine has saved (EngineDone).

        While the models still load nothing runs: the app exits at once (the run directory says interrupted).
        """
        self.quitting = True
        self.steering.request_stop()
        self._dirty = True
        if not self.engine_running:
            self.exit(self.engine_code or 0, return_code=self.engine_code or 0)
        elif self.state.backend is None and not self.state.running:
            self.forced_exit = True
            self.exit(ExitCode.INTERRUPTED, return_code=ExitCode.INTERRUPTED)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for title, about, action in keys.commands(self.config_name):
            yield SystemCommand(title, about, partial(self.run_action, action))
        for command in super().get_system_commands(screen):
            if command.title not in self.REPLACED_SYSTEM_COMMANDS:
                yield command

    @property
    def config_name(self) -> str:
        """The watched config file's name, as the help and the palette write it."""
        return printable(self.config_path.name) if self.config_path is not None else "config.toml"

    # --- signals and shutdown ----------------------------------------------
    def _install_signal_handlers(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread (some test runners): nothing to install
            self._signals_installed.append((loop, sig))

    def on_unmount(self) -> None:
        for loop, sig in self._signals_installed:
            loop.remove_signal_handler(sig)
        self._signals_installed.clear()

    def _on_signal(self, sig: int) -> None:
        if self.quitting and sig == signal.SIGINT:
            self.forced_exit = True
            self.exit(ExitCode.INTERRUPTED, return_code=ExitCode.INTERRUPTED)  # second Ctrl+C from outside
            return
        self.stop_engine()
        if sig == signal.SIGHUP:
            # The terminal is gone: if writing to it wedges the UI, still exit once the engine has saved.
            threading.Thread(target=self._exit_after_engine, daemon=True).start()

    def _exit_after_engine(self) -> None:
        thread = self.engine_thread
        if thread is not None:
            thread.join()
        time.sleep(2.0)
        os._exit(ExitCode.INTERRUPTED)

    def join_engine(self, timeout: float | None = None) -> None:
        """After the UI closed: ask the engine to stop and wait for it to save (bounded on a forced exit)."""
        thread = self.engine_thread
        if thread is None or not thread.is_alive():
            return
        self.steering.request_stop()
        if self.engine_gate is not None:
            self.engine_gate.set()
        thread.join(timeout)
        if thread.is_alive():
            self.session.store.emergency_flush()

    def run(self, *args: Any, **kwargs: Any) -> int | None:  # type: ignore[override]
        try:
            return super().run(*args, **kwargs)
        finally:
            self.join_engine(timeout=2.0 if self.forced_exit else None)


def export_results(session: Session, state: RunState | None = None) -> list[Path]:
    """The run's current results in every export format (the same code as `embopt-tui report`).

    Mid-run, the rows not finished yet are those of the Results tab (``state``): running ones with
    their similarity so far.
    """
    results = session.store.results()
    if state is not None:
        unfinished = (ev.RUNNING, ev.PENDING)
        live = {row["name"]: row for row in state.rows() if row.get("status") in unfinished}
        rows = results["experiments"]
        results["experiments"] = [live.get(r["name"], r) if r.get("status") in unfinished else r for r in rows]
    run = report.Run(str(session.run_dir), results)
    written = []
    for fmt, name in EXPORTS:
        path = session.run_dir / name
        path.write_text(report.render([run], fmt), encoding="utf-8")
        written.append(path)
    return written


def make_app(
    config_path: str | Path | None = "experiments.toml",
    *,
    runs_dir: str | Path = "runs",
    resume: str | Path | None = None,
    exit_when_done: bool | None = None,
    stable: bool | None = None,
) -> EmboptApp:
    """Validate the config and create (or reopen) the run directory, then build the dashboard.

    Raises SpecError / StoreError (one line) before anything is drawn.
    ``exit_when_done`` (default: $EMBOPT_TUI_EXIT_WHEN_DONE == "1") closes the app
    when the queue ends (benchmarks, scripts); ``stable`` (default:
    $EMBOPT_TUI_STABLE == "1") hides timings and paths.
    """
    if stable is None:
        stable = os.environ.get(STABLE_ENV) == "1"
    if exit_when_done is None:
        exit_when_done = os.environ.get(EXIT_WHEN_DONE_ENV) == "1"
    if resume is not None:
        session = Session.resume(resume)
        watched = None
    else:
        assert config_path is not None
        session = Session.start(config_path, runs_dir)
        watched = Path(config_path)
    return EmboptApp(session, config_path=watched, exit_when_done=exit_when_done, stable=stable)
