"""The ``embopt-tui`` command: argument parsing, exit codes, dispatch.

Start-up stays light: nothing here imports torch, fairseq2, sonar, textual or
rich at module level, so ``--help``, ``--version``, ``--check`` and ``report``
answer at once; the engine loads when a run starts.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from embopt_tui import __version__
from embopt_tui.exit_codes import ExitCode, of_status

DEFAULT_CONFIG = "experiments.toml"
DEFAULT_RUNS_DIR = "runs"
PROG = "embopt-tui"


EPILOG = f"""\
commands:
  {PROG} report RUN_DIR... [--format table|markdown|csv|json]
                        print the results of one or more runs side by side

exit codes: 0 all experiments done (or skipped), 1 some failed, 2 usage or config error, 130 interrupted.
environment: EMBOPT_THREADS=N limits torch to N CPU threads (1 is fastest on small shared machines).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Optimise sentence embeddings in SONAR space: a queue of experiments, watched live or run headless."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", metavar="CONFIG", help=f"experiments file (default: ./{DEFAULT_CONFIG})")
    parser.add_argument("--no-ui", action="store_true", help="run headless: progress lines, then the results table")
    parser.add_argument(
        "--runs-dir",
        metavar="DIR",
        default=DEFAULT_RUNS_DIR,
        help=f"where run directories are created (default: ./{DEFAULT_RUNS_DIR})",
    )
    parser.add_argument("--check", action="store_true", help="validate CONFIG and exit")
    parser.add_argument(
        "--deep",
        action="store_true",
        help="with --check: also find every model file the backend needs (caches included), downloading nothing",
    )
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue an interrupted or killed run in its own directory"
    )
    parser.add_argument(
        "--executor",
        choices=("inline", "ray"),
        help="where batches run: inline (this process) or ray (a Ray cluster); overrides [executor] kind",
    )
    parser.add_argument(
        "--address",
        metavar="ADDR",
        help='the Ray cluster to join: "auto" or HOST:PORT (default: a private local one); implies --executor ray',
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def build_report_parser() -> argparse.ArgumentParser:
    from engine.rundir.report import FORMATS, GROUPINGS

    parser = argparse.ArgumentParser(
        prog=f"{PROG} report", description="Print the results of one or more runs (several: side by side)."
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    parser.add_argument(
        "--group",
        choices=GROUPINGS,
        help="one row per experiment (its repeats together), method or objective: n, mean ± std",
    )
    parser.add_argument(
        "--plot",
        action="store_true",
        help=(
            "instead: the honest score against scorings spent of the discrete methods, one plot per story and"
            " objective; a fluent_swap row's front: similarity against NLL per token, the oracle marked"
        ),
    )
    return parser


def error(message: str) -> None:
    say(f"{PROG}: error: {message}")


def say(line: str) -> None:
    """One line on stderr, control characters (a file name's newline, an ESC) shown as escapes."""
    from engine.text import printable

    print(printable(line), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list[:1] == ["report"]:
            return report_command(args_list[1:])
        return run_command(build_parser(), args_list)
    except KeyboardInterrupt:  # Ctrl+C before the run's own handlers are in place
        return ExitCode.INTERRUPTED


def entry() -> None:
    """The ``embopt-tui`` command: :func:`main`, then an exit without interpreter teardown.

    Tearing down torch, fairseq2 and Textual took ~1 s after every run here,
    and everything a run writes is closed or flushed by the time main returns.
    """
    import os

    try:
        code: object = main()
    except SystemExit as exit_:  # argparse's --help, --version and usage errors
        code = exit_.code
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe has nobody left to read it
            pass
    os._exit(0 if code is None else int(code))  # type: ignore[call-overload]


def report_command(argv: list[str]) -> int:
    from engine.rundir.report import ReportError, load_run, render

    args = build_report_parser().parse_args(argv)
    try:
        runs = [load_run(d) for d in args.run_dirs]
    except ReportError as err:
        error(str(err))
        return ExitCode.USAGE
    width = shutil.get_terminal_size().columns if args.format == "table" and sys.stdout.isatty() else None
    try:
        sys.stdout.write(plots(runs) if args.plot else render(runs, args.format, width, args.group))
        sys.stdout.flush()
    except BrokenPipeError:  # `report ... | head`
        _silence_stdout()
    return ExitCode.OK


def plots(runs: list) -> str:
    """One scorings plot per (story, objective) of the rows that have a search trace, then one front plot per
    story of the rows that have a front (fluent_swap)."""
    from embopt_tui.plots import front_plot, scorings_plot

    traced: dict[tuple[str, str], list] = {}
    fronts: dict[str, list] = {}
    for run in runs:
        for row in run.experiments:
            if row.get("search_trace"):
                traced.setdefault((str(row.get("story")), str(row.get("objective"))), []).append(row)
            if row.get("front"):
                fronts.setdefault(str(row.get("story")), []).append(row)
    if not traced and not fronts:
        return (
            "no experiment of these runs has a search trace"
            " (the discrete methods: bank_search, bank_swap, token_swap, fluent_swap)\n"
        )
    width = min(120, shutil.get_terminal_size().columns)
    out = [
        scorings_plot(rows, width=width, height=20, title=f"{story}, {objective}: honest score per scorings (log x)")
        for (story, objective), rows in traced.items()
    ]
    out += [
        front_plot(rows, width=width, height=20, title=f"{story}: similarity against fluency (the front)")
        for story, rows in fronts.items()
    ]
    return "\n".join(plot + "\n" for plot in out)


def _silence_stdout() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def run_command(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    args = parser.parse_args(argv)
    if args.resume and args.config:
        parser.error("--resume takes the config from the run directory; drop CONFIG")
    if args.resume and args.check:
        parser.error("--check validates a CONFIG; it does not combine with --resume")
    if args.address is not None and args.executor == "inline":
        parser.error("--address names a Ray cluster; it does not combine with --executor inline")
    from engine.run.threads import threads_from_env

    try:
        threads_from_env()
    except ValueError as err:
        error(str(err))
        return ExitCode.USAGE
    config = Path(args.config or DEFAULT_CONFIG)
    if args.deep and not args.check:
        parser.error("--deep goes with --check")
    if args.check:
        return check(config, deep=args.deep)
    executor = (args.executor, args.address)
    if args.no_ui:
        return headless(config, args.runs_dir, args.resume, executor)
    return dashboard(config, args.runs_dir, args.resume, executor)


def check(config: Path, deep: bool = False) -> int:
    from engine.spec import SpecError, load_spec

    try:
        spec = load_spec(config)
    except SpecError as err:
        say(str(err))
        return ExitCode.USAGE
    from engine.text import printable

    n, s = len(spec.experiments), len(spec.stories)
    stories = f"{s} stor{'ies' if s != 1 else 'y'}"
    backend = f"backend {spec.backend.kind} on {spec.backend.device}"
    print(printable(f"ok: {n} experiment{'s' * (n != 1)}, {stories}, {backend} ({config})"))
    return deep_check(spec.backend) if deep else ExitCode.OK


def deep_check(backend) -> int:
    """Every model file the backend needs, found or not, then one line naming all that is missing."""
    from engine.run.doctor import diagnose
    from engine.text import printable

    print("checking the models' files (no download; fairseq2 and sonar load, ~10 s)", flush=True)
    pieces = diagnose(backend)
    for piece in pieces:
        print(printable(f"  {'ok     ' if piece.ok else 'MISSING'}  {piece.what}: {piece.detail}"))
    missing = [p for p in pieces if not p.ok]
    if not missing:
        print("ok: every model file is here")
        return ExitCode.OK
    fixes = list(dict.fromkeys(p.fix for p in missing if p.fix))
    error(
        f"not ready to run: {', '.join(p.what for p in missing)}" + (f". To fix: {'; '.join(fixes)}" if fixes else "")
    )
    return ExitCode.FAILED


def _prepare(config: Path, runs_dir: str, resume: str | None):
    """The Session to run, or the exit code after printing the one-line reason (a run directory that cannot be
    written is 1, like a write that fails mid-run; a bad config or run directory is 2)."""
    from engine.run.session import Session
    from engine.rundir.store import StorageError, StoreError
    from engine.spec import SpecError

    try:
        session = Session.resume(resume) if resume else Session.start(config, runs_dir)
    except SpecError as err:
        say(str(err))
        return ExitCode.USAGE
    except StorageError as err:
        error(str(err))
        return ExitCode.FAILED
    except StoreError as err:
        error(str(err))
        return ExitCode.USAGE
    warn(session.store.warnings)
    return session


def warn(warnings: list[str]) -> None:
    for warning in warnings:
        say(f"{PROG}: warning: {warning}")


def stopped_by_storage(session) -> int:
    """Exit 1 after one line when a write to the run directory failed mid-run (the run stopped there)."""
    fault = session.store.fault
    error(f"{fault}; the run stopped, what it saved is kept: --resume {session.run_dir} once it can be written")
    return ExitCode.FAILED


def headless(config: Path, runs_dir: str, resume: str | None, executor: tuple = (None, None)) -> int:
    session = _prepare(config, runs_dir, resume)
    if isinstance(session, ExitCode):
        return session
    session.use_executor(*executor)
    from embopt_tui.headless import run_headless

    status = run_headless(session)
    if session.store.fault is not None:
        return stopped_by_storage(session)
    return of_status(status)


def dashboard(config: Path, runs_dir: str, resume: str | None, executor: tuple = (None, None)) -> int:
    from engine.rundir.store import StorageError, StoreError
    from engine.spec import SpecError, load_spec

    try:
        if not resume:
            load_spec(config)  # a bad config is the first thing to fix, terminal or not
    except SpecError as err:
        say(str(err))
        return ExitCode.USAGE
    from embopt_tui.dashboard.terminal import HangupDriver, missing_terminal  # textual loads only for the dashboard

    missing = missing_terminal()
    if missing is not None:  # under nohup, cron or a pipe Textual would draw into nothing, for ever
        error(f"the dashboard needs a terminal ({missing} is not one); use --no-ui for headless runs")
        return ExitCode.USAGE
    from embopt_tui.dashboard.app import make_app

    # make_app validates and creates the run directory before anything is drawn.
    try:
        app = make_app(None if resume else config, runs_dir=Path(runs_dir), resume=Path(resume) if resume else None)
    except SpecError as err:
        say(str(err))
        return ExitCode.USAGE
    except StorageError as err:
        error(str(err))
        return ExitCode.FAILED
    except StoreError as err:
        error(str(err))
        return ExitCode.USAGE
    warn(app.session.store.warnings)
    if issubclass(HangupDriver, app.driver_class):  # Linux: end of input on stdin is a hangup
        app.driver_class = HangupDriver
    app.session.use_executor(*executor)
    app.run()
    if app.session.store.fault is not None:
        return stopped_by_storage(app.session)
    code = app.return_code
    return ExitCode.OK if code is None else int(code)


if __name__ == "__main__":
    sys.exit(main())
