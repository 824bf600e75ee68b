"""The run directory: everything a run leaves behind, written as it happens.

``RUNS_DIR/<UTC time>-<config stem>/`` holds

- ``config.toml``: the exact config text the queue follows: the one the run
  started from, replaced (atomically) by each live edit the engine applied, so
  ``--resume`` continues the queue as it stood; ``config.started.toml`` keeps
  the original once an edit replaced it;
- ``events.jsonl``: every event, one JSON object per line, appended and flushed
  line by line: the full history, and what ``--resume`` rebuilds a killed run from;
- ``results.json``: ``status, config, started, finished, best, experiments`` (plus
  ``resumed``, ``backend``, ``error``), rewritten atomically (temp file + ``os.replace``)
  when the run starts and after every finished experiment, so a killed run loses
  nothing that finished;
- ``results.md`` / ``results.csv``: the same rows through :mod:`engine.rundir.report`;
- ``embeddings.safetensors``: the final z of each experiment, keyed by its name;
  ``embeddings.best.safetensors``: its z at ``best_step`` (the final z where the method ends on its best).

A :class:`RunStore` is an event consumer (``store.record(event)``);
:meth:`RunStore.open` reopens a directory to complete it.

``events.jsonl`` is the source of truth: the summaries are rebuilt from it on
``--resume`` (a hand-edited ``results.json`` never outweighs it; a damaged
line is skipped with a warning), and they are rewritten in O(1) amortised time
per finished experiment (:data:`SUMMARY_REWRITES`), so a long queue costs the
same per experiment as a short one. While a store is open its directory is
locked (:mod:`engine.rundir.lock`). A write that fails (a full disk, a
directory made read-only) is not an experiment's failure: the store keeps
what is on disk a consistent prefix, writes nothing more, and :attr:`RunStore.fault`
says which file and why; the run stops and ``--resume`` continues it.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine import events as ev
from engine import files
from engine.results import FIELDS, FINISHED, RANKINGS, best_by_story, settings
from engine.rundir import report
from engine.rundir.fold import ExperimentProgress, RunProgress
from engine.rundir.lock import LOCK_FILE, RunLock, RunLocked
from engine.spec import SpecError, parse_spec
from engine.spec.limits import CONFIG_BYTES

CONFIG_FILE = "config.toml"
STARTED_CONFIG_FILE = "config.started.toml"  # the config as started, once a live edit replaced config.toml
EVENTS_FILE = "events.jsonl"
RESULTS_FILE = report.RESULTS_FILE
MARKDOWN_FILE = "results.md"
CSV_FILE = "results.csv"
EMBEDDINGS_FILE = "embeddings.safetensors"
BEST_EMBEDDINGS_FILE = "embeddings.best.safetensors"
FINAL_CONTENT = "final z per experiment (where it ended), keyed by experiment name"
BEST_CONTENT = "best z per experiment (its z at best_step, the highest similarity on its trajectory), keyed by name"
COMPLETED = FINISHED  # statuses a resume keeps; everything else runs again
COMPARED = ("status", "steps_done", "final_sim", "text_sim", "text")  # a results.json row must match its event here
RESULTS_BYTES = 1 << 30
# The summaries are rewritten when this share of the queue finished since the last rewrite (every finish in a
# queue of up to this many), or once 10x the last rewrite's time has passed: a queue of any length pays a
# bounded number of O(queue) rewrites, and a slow one keeps results.json current.
SUMMARY_REWRITES = 64
SUMMARY_COST_RATIO = 10.0


class StoreError(Exception):
    """A run directory that cannot be created or reopened: ``str(err)`` is one line."""


class StorageError(StoreError):
    """A write to the run directory failed (disk full, read-only, I/O error): ``str(err)`` is one line naming
    the file and the OS error. What was saved before is kept: ``--resume`` continues once the disk is fixed."""


def _storage_error(path: Path, err: OSError) -> StorageError:
    return StorageError(f"{path}: cannot write: {err.strerror or err}")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finite(value: Any) -> Any:
    """NaN/Inf become null: results.json stays standard JSON that any tool reads."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


write_atomic = files.write_atomic  # readers see the old file or the new one, never half of one


def read_events(path: Path, damaged: list[int] | None = None) -> tuple[list[ev.Event], int]:
    """Events of an ``events.jsonl``; also the byte length of its complete lines.

    A process killed mid-write leaves a last line without its newline (or cut
    inside the JSON): that line is ignored. A complete line that is not an
    event this version reads (bad JSON, a field of the wrong type: a hand edit,
    a flipped bit) is skipped, and its number added to ``damaged``.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    good = raw.rfind(b"\n") + 1  # everything after the last newline is a torn write
    out: list[ev.Event] = []
    for number, line in enumerate(raw[:good].split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            out.append(ev.event_from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError, RecursionError):
            if damaged is not None:
                damaged.append(number)
    return out, good


class RunStore:
    """Consumes events and keeps the run directory up to date. Thread-safe."""

    def __init__(
        self, run_dir: Path, config_text: str, config_path: str, started: str, lock: RunLock | None = None
    ) -> None:
        self.run_dir = run_dir
        self.config_text = config_text
        self.config_path = config_path
        self.started = started
        self.finished: str | None = None
        self.status = "running"
        self.error: str | None = None
        self.resumed: list[str] = []
        self.spec: Any = None  # engine.spec.Spec when known: fills rows of experiments not yet finished
        self.progress = RunProgress()  # what the events say: every row and z comes from here
        self.fault: StorageError | None = None  # the first failed write; nothing is written after it
        self.warnings: list[str] = []  # what reopening found damaged (and skipped or rebuilt)
        self._backend: dict[str, Any] | None = None  # from an earlier results.json, until a BackendReady
        self._lock = threading.RLock()
        self._run_lock = lock
        self._unsaved = 0  # finished experiments the summaries do not show yet
        self._summaries_due = 0.0  # monotonic time from which a finish may rewrite them
        self._index: tuple[Any, dict[str, Any]] = (None, {})  # (spec, its experiments by name)
        try:
            self._events = open(run_dir / EVENTS_FILE, "ab", buffering=0)
        except OSError as err:
            self.close()
            raise _storage_error(run_dir / EVENTS_FILE, err) from None

    # --- creation ---------------------------------------------------------
    @classmethod
    def create(cls, config_path: str | Path, runs_dir: str | Path, config_text: str | None = None) -> RunStore:
        """A new directory ``runs_dir/<UTC time>-<config stem>`` holding the config as run."""
        config_path = Path(config_path)
        if config_text is None:
            try:
                config_text = config_path.read_text(encoding="utf-8")
            except OSError as err:
                raise StoreError(f"{config_path}: cannot read: {err.strerror}") from None
        runs_dir = Path(runs_dir).absolute()  # the path shown and logged must work from anywhere
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"{runs_dir}: cannot create runs directory: {err.strerror}") from None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        base = f"{stamp}-{config_path.stem or 'run'}"
        for n in range(1, 1000):  # two runs in the same second get -2, -3, ...
            run_dir = runs_dir / (base if n == 1 else f"{base}-{n}")
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                continue
            except OSError as err:
                raise StoreError(f"{run_dir}: cannot create run directory: {err.strerror}") from None
        else:
            raise StoreError(f"{runs_dir}: too many runs named {base}")
        lock = _lock(run_dir)
        try:
            write_atomic(run_dir / CONFIG_FILE, config_text)
        except OSError as err:
            lock.release()
            raise _storage_error(run_dir / CONFIG_FILE, err) from None
        return cls(run_dir, config_text, str(config_path.resolve()), utc_now(), lock)

    @classmethod
    def open(cls, run_dir: str | Path) -> RunStore:
        """Reopen a run to complete it: ``events.jsonl`` says what finished (``results.json`` only where a run
        has no events file), whatever the files say about the rest. Locks the directory (StoreError if held)."""
        if not Path(run_dir).is_dir():
            raise StoreError(f"{run_dir}: no such run directory")
        run_dir = Path(run_dir).absolute()
        if not (run_dir / CONFIG_FILE).exists():
            raise StoreError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
        lock = _lock(run_dir)
        try:
            return cls._reopen(run_dir, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _reopen(cls, run_dir: Path, lock: RunLock) -> RunStore:
        try:
            config_text = files.read_regular(run_dir / CONFIG_FILE, CONFIG_BYTES).decode("utf-8")
        except (OSError, files.FileRefused, UnicodeDecodeError) as err:
            raise StoreError(f"{run_dir / CONFIG_FILE}: cannot read: {getattr(err, 'strerror', None) or err}") from None
        events_path = run_dir / EVENTS_FILE
        if events_path.exists() and (problem := files.kind_problem(events_path.stat().st_mode)):
            raise StoreError(f"{events_path}: {problem}")  # a FIFO would block the resume for ever
        damaged: list[int] = []
        try:
            history, good = read_events(events_path, damaged)
            for stale in files.stale_temporaries(run_dir):  # half-written by a process that died (we hold the lock)
                stale.unlink()
            if events_path.exists() and events_path.stat().st_size != good:
                with open(events_path, "r+b") as f:  # drop the torn last line so appends start clean
                    f.truncate(good)
        except OSError as err:
            raise _storage_error(events_path, err) from None

        started = next((e for e in history if isinstance(e, ev.RunStarted)), None)
        previous = {} if started is not None else _previous_results(run_dir)  # a run without its events file
        config_path = previous.get("config") or (started.config_path if started else str(run_dir / CONFIG_FILE))
        began = previous.get("started") or (_stamp(started.time) if started else utc_now())
        applied = [e.text for e in history if isinstance(e, ev.ConfigApplied) and e.text]
        if applied and applied[-1] != config_text:  # killed between the event and the config's rewrite
            try:
                write_atomic(run_dir / CONFIG_FILE, applied[-1])
            except OSError as err:
                raise _storage_error(run_dir / CONFIG_FILE, err) from None
            config_text = applied[-1]
        store = cls(run_dir, config_text, str(config_path), str(began), lock)
        if damaged:
            shown = ", ".join(map(str, damaged[:5])) + (", ..." if len(damaged) > 5 else "")
            store.warnings.append(
                f"{events_path}: skipped {len(damaged)} damaged line{'s' * (len(damaged) > 1)} ({shown});"
                " what they recorded runs again"
            )
        if started is None:
            store._take_previous(previous)
        for event in history:
            try:
                store.progress.apply(event)
            except (ValueError, TypeError, KeyError, AttributeError):  # a well-formed event that contradicts the rest
                store.warnings.append(f"{events_path}: skipped a {event.kind} event that cannot apply")
            if isinstance(event, ev.RunStarted) and event.resumed:
                store.resumed.append(_stamp(event.time))
        if started is not None and _disagree(_previous_results(run_dir), store.completed):
            store.warnings.append(f"{run_dir / RESULTS_FILE}: disagrees with {EVENTS_FILE}; rebuilt from it")
        return store

    def _take_previous(self, previous: dict[str, Any]) -> None:
        """What a results.json says finished, for a run directory without events.jsonl."""
        self.resumed = [str(t) for t in previous.get("resumed") or []]
        zs = _read_embeddings(self.run_dir / EMBEDDINGS_FILE)
        best_zs = _read_embeddings(self.run_dir / BEST_EMBEDDINGS_FILE)
        for row in previous.get("experiments") or []:
            if not isinstance(row, dict) or row.get("status") not in COMPLETED:
                continue
            try:
                self.progress.add_finished([row])
            except (ValueError, TypeError, KeyError, AttributeError):
                self.warnings.append(f"{self.run_dir / RESULTS_FILE}: skipped a damaged row; it runs again")
                self.progress.experiments.pop(str(row.get("name")), None)
                continue
            if str(row.get("name")) in zs:
                self.progress.experiments[str(row["name"])].z = zs[str(row["name"])]
            if str(row.get("name")) in best_zs:
                self.progress.experiments[str(row["name"])].best_z = best_zs[str(row["name"])]
        if isinstance(previous.get("backend"), dict):
            self._backend = previous["backend"]

    # --- what resume needs --------------------------------------------------
    @property
    def completed(self) -> dict[str, dict[str, Any]]:
        """Finished (done/failed/skipped) results by name, with ``z`` when known: run_queue skips these."""
        with self._lock:
            out = {}
            for name, x in self.progress.experiments.items():
                if x.result is not None and x.status in COMPLETED:
                    out[name] = dict(x.result)
                    if x.z is not None:
                        out[name]["z"] = list(x.z)
                    if x.best_z is not None:
                        out[name]["best_z"] = list(x.best_z)
            return out

    # --- consuming events ---------------------------------------------------
    def record(self, event: ev.Event) -> None:
        """Append the event to events.jsonl; rewrite the summaries when something finished.

        A failed write sets :attr:`fault` instead of raising: the engine is not
        to take a full disk for a failing experiment. From then on nothing more
        is written, so the files stay a prefix of the run that ``--resume`` continues.
        """
        line = (json.dumps(event.to_json(), separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            self.progress.apply(event)
            synced = isinstance(event, (ev.ExperimentFinished, ev.RunFinished))  # on disk before anyone is told
            if not self._guarded(self.run_dir / EVENTS_FILE, self._append, line, synced):
                return
            if isinstance(event, ev.RunStarted):
                self.status, self.finished = "running", None
                if event.resumed:
                    self.resumed.append(_stamp(event.time))
                self._write_summaries(embeddings=False)
            elif isinstance(event, ev.ConfigApplied):
                self._apply_config(event.text)
            elif isinstance(event, ev.BackendFailed):
                self.error = event.error
                self._write_summaries(embeddings=False)
            elif isinstance(event, ev.ExperimentStarted):
                # Once per batch (when due), so a killed run's results.json says what was running.
                if (not event.batch or event.name == event.batch[-1]) and self._summaries_due_now(finished=0):
                    self._write_summaries(embeddings=False)
            elif isinstance(event, ev.ExperimentFinished):
                if self._summaries_due_now(finished=1):
                    self._write_summaries(embeddings=True)
            elif isinstance(event, ev.RunFinished):
                self.status = event.status
                self.finished = utc_now()
                self._write_summaries(embeddings=True)

    def _append(self, line: bytes, sync: bool) -> None:
        if self._events.closed:  # an event after the run ended (a face's late note): recorded while still ours
            if not self._relock():
                return
            self._events = open(self.run_dir / EVENTS_FILE, "ab", buffering=0)
        view = memoryview(line)
        while view:
            view = view[os.write(self._events.fileno(), view) :]
        if sync:
            os.fsync(self._events.fileno())

    def _guarded(self, path: Path, write: Callable[..., None], *args: Any) -> bool:
        """``write(*args)``, one write to ``path`` in the run directory; on an OSError record the fault (and
        write nothing more). False when nothing was written."""
        if self.fault is not None:
            return False
        try:
            write(*args)
            return True
        except OSError as err:
            self.fault = _storage_error(path, err)
            self._events.close()  # unbuffered: nothing half-written waits to be flushed later
            return False

    def _relock(self) -> bool:
        if self._run_lock is not None and self._run_lock.held:
            return True
        try:
            self._run_lock = RunLock(self.run_dir)
            return True
        except (RunLocked, OSError):  # another process took the directory over: the note is not ours to add
            return False

    def _summaries_due_now(self, finished: int) -> bool:
        """Whether the summaries are to be rewritten now: always in a queue of up to :data:`SUMMARY_REWRITES`
        experiments; in a longer one once a 1/SUMMARY_REWRITES share of it finished since the last rewrite, or
        when their time is up."""
        self._unsaved += finished
        share = len(self.progress.experiments) // SUMMARY_REWRITES
        return share <= 1 or self._unsaved >= share or time.monotonic() >= self._summaries_due

    def _apply_config(self, text: str) -> None:
        """A live edit the engine applied becomes the run's config.toml (the first one keeps the original aside)."""
        if not text or text == self.config_text:
            return
        started = self.run_dir / STARTED_CONFIG_FILE
        if not started.exists() and not self._guarded(started, write_atomic, started, self.config_text):
            return
        if not self._guarded(self.run_dir / CONFIG_FILE, write_atomic, self.run_dir / CONFIG_FILE, text):
            return
        self.config_text = text
        try:  # placeholder rows of the experiments the edit added take their settings from it
            self.spec = parse_spec(text, self.run_dir / CONFIG_FILE, base_dir=Path(self.config_path).parent)
        except SpecError:
            pass  # it was valid when applied; a predictor folder removed since then only costs the placeholders

    # --- ending -----------------------------------------------------------
    def finish(self, status: str) -> None:
        """Set the final status when the queue ends without a RunFinished event (e.g. a crash)."""
        with self._lock:
            self.status = status
            self.finished = utc_now()
            self._write_summaries(embeddings=True)

    def emergency_flush(self, timeout: float = 1.0) -> bool:
        """Called on a forced exit from another thread: mark the run interrupted if the lock is free soon."""
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            self.status = ev.INTERRUPTED
            self.finished = utc_now()
            self._write_summaries(embeddings=False)
            return True
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close events.jsonl and let the directory go (another process may resume it now)."""
        with self._lock:
            if hasattr(self, "_events") and not self._events.closed:
                self._events.close()
            if self._run_lock is not None:
                self._run_lock.release()

    # --- the summaries ------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """Rows of results.json in queue order; unfinished ones as pending/running placeholders."""
        with self._lock:
            rows = [self._row(x) for x in self.progress.experiments.values()]
            best = set(best_by_story(rows, self.rank_by).values())
            for row in rows:
                row["best"] = row["name"] in best
            return rows

    def _row(self, x: ExperimentProgress) -> dict[str, Any]:
        if x.result is not None:
            out = {f: x.result.get(f) for f in FIELDS}
            out.update({k: v for k, v in x.result.items() if k not in out})
            return _finite(out)
        out = dict.fromkeys(FIELDS)
        out.update(name=x.name, status=x.status)
        experiment = self._experiment(x.name)
        if experiment is not None:
            out.update(settings(experiment, self.spec.story_of(experiment)))
        if x.status == ev.RUNNING:
            out.update(init_sim=x.init_sim, oracle_sim=x.oracle_sim)
        return _finite(out)

    @property
    def rank_by(self) -> str:
        """What "best" means for this run (the config's ``rank_by``)."""
        return self.spec.rank_by if self.spec is not None else RANKINGS[0]

    def _experiment(self, name: str) -> Any:
        if self.spec is None:
            return None
        if self._index[0] is not self.spec:  # by name, once per spec: a row each, for queues of thousands
            self._index = (self.spec, {e.name: e for e in self.spec.experiments})
        return self._index[1].get(name)

    @property
    def backend(self) -> dict[str, Any] | None:
        ready = self.progress.backend
        if ready is None:
            return self._backend
        return {
            "backend": ready.backend,
            "device": ready.device,
            "dim": ready.dim,
            "reference_norm": ready.reference_norm,
            "load_seconds": ready.seconds,
            "predictor": ready.predictor,
            "predictor_revision": ready.predictor_revision,
            "fluency": ready.fluency,
            "fluency_revision": ready.fluency_revision,
        }

    def results(self) -> dict[str, Any]:
        """The results.json object."""
        with self._lock:
            rows = self.rows()
            return {
                "status": self.status,
                "config": self.config_path,
                "started": self.started,
                "finished": self.finished,
                "rank_by": self.rank_by,
                "best": best_by_story(rows, self.rank_by),
                "resumed": list(self.resumed),
                "backend": self.backend,
                "error": self.error,
                "experiments": rows,
            }

    def _write_summaries(self, embeddings: bool) -> None:
        """results.json, .md, .csv (and the embeddings when asked or not yet saved); each file atomically."""
        began = time.monotonic()
        data = self.results()
        run = report.Run(str(self.run_dir), data)
        summaries = {
            RESULTS_FILE: lambda: json.dumps(data, indent=2, allow_nan=False) + "\n",
            MARKDOWN_FILE: lambda: report.format_markdown([run]),
            CSV_FILE: lambda: report.format_csv([run]),
        }
        for name, text in summaries.items():
            path = self.run_dir / name
            if not self._guarded(path, write_atomic, path, text()):
                return
        if embeddings or self._unsaved:
            zs = {name: x.z for name, x in self.progress.experiments.items() if x.z is not None}
            path = self.run_dir / EMBEDDINGS_FILE
            if zs and not self._guarded(path, _write_embeddings, path, zs, FINAL_CONTENT):
                return
            # a method without a separate best (the discrete ones end on their best) keeps its final z here too
            best = {name: self.progress.experiments[name].best_z or z for name, z in zs.items()}
            path = self.run_dir / BEST_EMBEDDINGS_FILE
            if best and not self._guarded(path, _write_embeddings, path, best, BEST_CONTENT):
                return
        self._unsaved = 0
        self._summaries_due = time.monotonic() + SUMMARY_COST_RATIO * (time.monotonic() - began)


def _write_embeddings(path: Path, zs: Mapping[str, list[float]], content: str) -> None:
    import numpy as np  # lazily: the CLI's start-up never needs it
    from safetensors.numpy import save

    tensors = {name: np.asarray(z, dtype=np.float32) for name, z in zs.items()}
    write_atomic(path, save(tensors, metadata={"content": content}))


def _read_embeddings(path: Path) -> dict[str, list[float]]:
    if not path.exists():
        return {}
    try:
        from safetensors.numpy import load_file

        return {name: array.astype("float64").tolist() for name, array in load_file(str(path)).items()}
    except Exception:  # a torn file is rebuilt from the results that follow
        return {}


def _lock(run_dir: Path) -> RunLock:
    try:
        return RunLock(run_dir)
    except RunLocked as err:
        raise StoreError(str(err)) from None
    except OSError as err:
        raise _storage_error(run_dir / LOCK_FILE, err) from None


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _previous_results(run_dir: Path) -> dict[str, Any]:
    """An earlier results.json, or {} when there is none that reads as one."""
    try:
        loaded = json.loads(files.read_regular(run_dir / RESULTS_FILE, RESULTS_BYTES))
    except (OSError, ValueError, RecursionError):  # killed before the first write, torn, or not a file
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _disagree(previous: Mapping[str, Any], completed: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether results.json claims a finished experiment, or a result, that events.jsonl does not hold.

    (It may lag behind the events: a finish it does not show yet is no disagreement.)
    """
    rows = previous.get("experiments")
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or row.get("status") not in COMPLETED:
            continue
        name = row.get("name")
        mine = completed.get(name) if isinstance(name, str) else None
        if mine is None or any(_finite(mine.get(key)) != row.get(key) for key in COMPARED):
            return True
    return False
