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
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.results import FIELDS, FINISHED, RANKINGS, best_by_story, settings
from engine.rundir import report
from engine.rundir.fold import ExperimentProgress, RunProgress
from engine.spec import SpecError, parse_spec

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


class StoreError(Exception):
    """A run directory that cannot be created or reopened: ``str(err)`` is one line."""


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


def write_atomic(path: Path, data: str | bytes) -> None:
    """Readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_events(path: Path) -> tuple[list[ev.Event], int]:
    """Events of an ``events.jsonl``; also the byte length of its complete lines.

    A process killed mid-write leaves a last line without its newline (or cut
    inside the JSON): that line is ignored, and so is any line this version
    cannot read.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    good = raw.rfind(b"\n") + 1  # everything after the last newline is a torn write
    out: list[ev.Event] = []
    for line in raw[:good].splitlines():
        if not line.strip():
            continue
        try:
            out.append(ev.event_from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return out, good


class RunStore:
    """Consumes events and keeps the run directory up to date. Thread-safe."""

    def __init__(self, run_dir: Path, config_text: str, config_path: str, started: str) -> None:
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
        self._backend: dict[str, Any] | None = None  # from an earlier results.json, until a BackendReady
        self._lock = threading.RLock()
        self._events = open(run_dir / EVENTS_FILE, "ab")

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
        write_atomic(run_dir / CONFIG_FILE, config_text)
        return cls(run_dir, config_text, str(config_path.resolve()), utc_now())

    @classmethod
    def open(cls, run_dir: str | Path) -> RunStore:
        """Reopen a run to complete it: finished experiments come from ``events.jsonl``
        (falling back to ``results.json``), whatever the files say about the rest."""
        if not Path(run_dir).is_dir():
            raise StoreError(f"{run_dir}: no such run directory")
        run_dir = Path(run_dir).absolute()
        try:
            config_text = (run_dir / CONFIG_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise StoreError(f"{run_dir}: not a run directory (no {CONFIG_FILE})") from None
        except OSError as err:
            raise StoreError(f"{run_dir / CONFIG_FILE}: cannot read: {err.strerror}") from None
        previous: dict[str, Any] = {}
        try:
            loaded = json.loads((run_dir / RESULTS_FILE).read_text(encoding="utf-8"))
            previous = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            pass  # killed before the first write, or torn: events.jsonl has the history
        events_path = run_dir / EVENTS_FILE
        history, good = read_events(events_path)
        if events_path.exists() and events_path.stat().st_size != good:
            with open(events_path, "r+b") as f:  # drop the torn last line so appends start clean
                f.truncate(good)

        started = next((e for e in history if isinstance(e, ev.RunStarted)), None)
        config_path = previous.get("config") or (started.config_path if started else str(run_dir / CONFIG_FILE))
        began = previous.get("started") or (
            datetime.fromtimestamp(started.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if started else utc_now()
        )
        applied = [e.text for e in history if isinstance(e, ev.ConfigApplied) and e.text]
        if applied and applied[-1] != config_text:  # killed between the event and the config's rewrite
            write_atomic(run_dir / CONFIG_FILE, applied[-1])
            config_text = applied[-1]
        store = cls(run_dir, config_text, str(config_path), str(began))
        store.resumed = list(previous.get("resumed") or [])
        rows = [r for r in previous.get("experiments") or [] if isinstance(r, dict)]
        store.progress.add_finished(r for r in rows if r.get("status") in COMPLETED)
        for name, z in _read_embeddings(run_dir / EMBEDDINGS_FILE).items():
            if name in store.progress.experiments:
                store.progress.experiments[name].z = z
        for name, z in _read_embeddings(run_dir / BEST_EMBEDDINGS_FILE).items():
            if name in store.progress.experiments:
                store.progress.experiments[name].best_z = z
        if isinstance(previous.get("backend"), dict):
            store._backend = previous["backend"]
        for event in history:  # events win over results.json: they are written first
            store.progress.apply(event)
        return store

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
        """Append the event to events.jsonl; rewrite the summaries when something finished."""
        line = (json.dumps(event.to_json(), separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            if self._events.closed:  # an event after the run ended (a face's late note): still recorded
                self._events = open(self.run_dir / EVENTS_FILE, "ab")
            self._events.write(line)
            self._events.flush()
            self.progress.apply(event)
            rewrite = False
            if isinstance(event, ev.RunStarted):
                self.status, self.finished = "running", None
                if event.resumed:
                    self.resumed.append(utc_now())
                rewrite = True
            elif isinstance(event, ev.ConfigApplied):
                self._apply_config(event.text)
            elif isinstance(event, ev.BackendFailed):
                self.error = event.error
                rewrite = True
            elif isinstance(event, ev.ExperimentStarted):
                # Once per batch, so a killed run's results.json says what was running.
                rewrite = not event.batch or event.name == event.batch[-1]
            elif isinstance(event, ev.ExperimentFinished):
                self._events.flush()
                os.fsync(self._events.fileno())
                rewrite = True
            elif isinstance(event, ev.RunFinished):
                self.status = event.status
                self.finished = utc_now()
                os.fsync(self._events.fileno())
                rewrite = True
            if rewrite:
                self._write_summaries(embeddings=isinstance(event, (ev.ExperimentFinished, ev.RunFinished)))

    def _apply_config(self, text: str) -> None:
        """A live edit the engine applied becomes the run's config.toml (the first one keeps the original aside)."""
        if not text or text == self.config_text:
            return
        started = self.run_dir / STARTED_CONFIG_FILE
        if not started.exists():
            write_atomic(started, self.config_text)
        write_atomic(self.run_dir / CONFIG_FILE, text)
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
            self._events.flush()
            self._write_summaries(embeddings=False)
            return True
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            if not self._events.closed:
                self._events.close()

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
        return next((e for e in self.spec.experiments if e.name == name), None)

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
        data = self.results()
        write_atomic(self.run_dir / RESULTS_FILE, json.dumps(data, indent=2, allow_nan=False) + "\n")
        run = report.Run(str(self.run_dir), data)
        write_atomic(self.run_dir / MARKDOWN_FILE, report.format_markdown([run]))
        write_atomic(self.run_dir / CSV_FILE, report.format_csv([run]))
        zs = {name: x.z for name, x in self.progress.experiments.items() if x.z is not None}
        if embeddings and zs:
            _write_embeddings(self.run_dir / EMBEDDINGS_FILE, zs, FINAL_CONTENT)
            # a method without a separate best (the discrete ones end on their best) keeps its final z here too
            best = {name: self.progress.experiments[name].best_z or z for name, z in zs.items()}
            _write_embeddings(self.run_dir / BEST_EMBEDDINGS_FILE, best, BEST_CONTENT)


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
