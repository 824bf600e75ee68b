"""The ray executor: one driver (the engine thread), many workers (engine/run/executors/ray_worker.py).

The driver hands out batches, re-emits what the workers stream back (so the
run directory, resume and the faces see the events an inline run makes) and
answers the steering: pause stops handing out batches, stop and skip reach the
workers between steps. A batch whose worker dies runs again from its start on
a fresh worker, up to ``max_attempts`` runs, then its experiments fail with the
worker's error and the queue goes on.

A private cluster (no ``address``) is this process's own: every port on
127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` keeps Ray from swapping the
loopback address for the host's), token authentication with a random token
held in the environment (Ray would otherwise write ``~/.ray/auth_token``), no
dashboard or API server (no HTTP server at all; the minimal ray wheel has no job
server), session files in a private temp dir (Unix socket paths must stay short),
shut down at the end, or by engine/run/executors/reaper.py when this process dies
without shutting it down. Its head is lean: only the daemons a run uses start,
and they end together rather than one by one (see :func:`_lean_head`,
:func:`_quick_end`); the driver never imports torch.
``ray.init`` runs in the engine thread: on the main thread it would replace
the SIGTERM handler, and Ray ties its daemons' lives to the thread that
started them (so they also die with a killed driver).

Ray's own lines (its logger, and the "(raylet) ..." lines it prints to stdout)
go to ``ray.log`` in the run directory; the cluster's logs are copied to
``ray-logs/`` there when a private cluster shuts down.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue as queue_mod
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import events as ev
from engine import files
from engine.results import result_row
from engine.run.backend import BackendError
from engine.run.queue import Queue
from engine.run.threads import thread_limit
from engine.spec import Executor
from engine.text import one_line

LOG_FILE = "ray.log"
LOGS_DIR = "ray-logs"
LOADING_START = 0.2  # the share of the loading bar the cluster's start takes
POLL_S = 0.25  # how often the driver looks at the steering while nothing arrives: the faces redraw at 4 Hz
OBJECT_STORE_BYTES = 128 * 2**20  # events and results only: Ray's default (30 % of RAM) would reserve GBs


class ClusterError(BackendError):
    """The cluster cannot be started or reached: ``str(err)`` is one line."""


@dataclass
class _Task:
    id: int
    names: list[str]
    attempt: int
    finished: set[str] = field(default_factory=set)

    @property
    def left(self) -> list[str]:
        return [n for n in self.names if n not in self.finished]


@dataclass
class _Worker:
    name: str
    handle: Any
    info: dict[str, Any] | None = None  # set once its models are loaded
    task: _Task | None = None

    @property
    def gpus(self) -> tuple[str, ...]:
        return tuple(self.info["gpus"]) if self.info else ()


def _reachable(address: str) -> None:
    """A host:port that refuses or times out fails in one line now, not after Ray's long retries."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", ray://... : Ray's own lookup answers quickly
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as err:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None


class _RayLog:
    """Sends Ray's loggers and its printed worker/raylet lines to one file while the executor runs."""

    # ray.init(configure_logging=False) clears the handlers of "ray": "ray._private" keeps ours through it.
    LOGGERS = ("ray", "ray._private")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "a", encoding="utf-8", buffering=1)
        self.handler = logging.StreamHandler(self.file)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.saved: dict[str, tuple[list[logging.Handler], bool]] = {}
        self.printer: Any = None

    def __enter__(self) -> _RayLog:
        import ray._private.worker as ray_worker

        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            self.saved[name] = (list(logger.handlers), logger.propagate)
        self.attach()
        # Ray's error listener prints "(raylet) A worker died ..." with this function, to stdout: into the file.
        self.printer = getattr(ray_worker, "print_to_stdstream", None)
        if self.printer is not None:
            ray_worker.print_to_stdstream = self._print
        return self

    def attach(self) -> None:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.addHandler(self.handler)
            logger.propagate = False

    def _print(self, data: dict[str, Any], ignore_prefix: bool = False) -> None:
        for line in data.get("lines", []):
            self.file.write(f"({data.get('pid', '?')}) {line}\n")

    def __exit__(self, *exc: Any) -> None:
        import ray._private.worker as ray_worker

        if self.printer is not None:
            ray_worker.print_to_stdstream = self.printer
        for name, (handlers, propagate) in self.saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self.handler)
            for handler in handlers:
                logger.addHandler(handler)
            logger.propagate = propagate
        self.file.close()


def _private_environment() -> None:
    """Before ray.init of a private cluster (and inherited by its daemons): loopback only, token auth in memory."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read at ray import; set below for an imported ray
    if "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def _refresh_auth() -> None:
    """Ray reads the auth mode and token when it is imported: make an already imported ray see ours."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _crash_traces() -> None:
    """Enable faulthandler on the process's real stderr before ``ray.init`` does it on ``sys.stderr``.

    Under the dashboard ``sys.stderr`` is Textual's capture, whose ``fileno()`` is -1:
    Ray's own ``faulthandler.enable()`` then raised RuntimeError and the cluster
    never started (pytest enables faulthandler first, which hid it from the tests).
    """
    import faulthandler

    if faulthandler.is_enabled():
        return
    try:
        faulthandler.enable(file=sys.__stderr__, all_threads=False)
    except (AttributeError, OSError, RuntimeError, ValueError):  # no usable stderr at all (None, closed)
        faulthandler.enable(file=open(os.devnull, "w"), all_threads=False)  # faulthandler keeps the file


def start_cluster(executor: Executor) -> str | None:
    """``ray.init`` as ``executor`` says; returns the private cluster's temp dir (None when joining one)."""
    _crash_traces()
    if not executor.address:
        _private_environment()
    import ray
    from ray._private import ray_constants

    # Ray's C++ failure handler prints "*** SIGTERM received ..." into the terminal on every stop request.
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    if not executor.address:
        _refresh_auth()

    if executor.address:
        _reachable(executor.address)
        try:
            ray.init(address=executor.address, log_to_driver=False, configure_logging=False, include_dashboard=False)
        except Exception as err:
            raise ClusterError(f"cannot join the Ray cluster at {executor.address}: {one_line(err)}") from None
        return None
    ray_constants.ENABLE_RAY_CLUSTER = False  # get_node_ip_address() -> 127.0.0.1 (ray was imported before)
    temp_dir = tempfile.mkdtemp(prefix="embopt-ray-")  # 0700; Ray makes its own temp dir 0777, so inside this one
    try:
        with _lean_head():
            ray.init(
                num_cpus=max(os.cpu_count() or 1, executor.workers),
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                _temp_dir=os.path.join(temp_dir, "ray"),
                object_store_memory=OBJECT_STORE_BYTES,
                log_to_driver=False,
                configure_logging=False,
            )
    except Exception as err:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise ClusterError(f"cannot start a local Ray cluster: {one_line(err)}") from None
    _start_reaper(temp_dir)
    return temp_dir


# Head daemons a private cluster does without. The API server (dashboard.py, even with include_dashboard=False)
# is an HTTP server nobody here asks anything, and ray.init waits about a second for it; the autoscaler's monitor
# has nothing to scale; the log monitor forwards worker output, which log_to_driver=False drops anyway.
# ray.init has no switch for them (RayParams has two, ray.init passes neither), so they are skipped while it runs.
LEAN_HEAD = ("start_api_server", "start_monitor", "start_log_monitor")


@contextlib.contextmanager
def _lean_head() -> Iterator[None]:
    from ray._private.node import Node

    saved = {name: Node.__dict__[name] for name in LEAN_HEAD if name in Node.__dict__}
    for name in saved:
        setattr(Node, name, lambda self, *args, **kwargs: None)
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(Node, name, method)


def _start_reaper(temp_dir: str) -> None:
    """engine/run/executors/reaper.py: ends the cluster if this process dies without shutting it down."""
    root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    subprocess.Popen(
        [sys.executable, "-m", "engine.run.executors.reaper", str(os.getpid()), temp_dir],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl+C to the terminal's process group is the driver's to handle, not its
    )


def stop_cluster(temp_dir: str | None, log_dir: Path | None) -> None:
    """Shut the private cluster down (its daemons with it) and keep its logs in the run directory."""
    import ray

    if temp_dir is not None:
        _quick_end()
    ray.shutdown()
    if temp_dir is None:
        return
    logs = Path(temp_dir) / "ray" / "session_latest" / "logs"
    if log_dir is not None and logs.is_dir():
        try:
            shutil.copytree(
                logs, log_dir / LOGS_DIR, dirs_exist_ok=True, ignore=shutil.ignore_patterns("old", "events")
            )
            files.apply_umask(log_dir / LOGS_DIR)  # Ray makes its folders world-writable; copies keep modes
        except OSError:
            pass  # the logs are a courtesy: a full disk must not turn a finished run into a failed one
    shutil.rmtree(temp_dir, ignore_errors=True)


def _quick_end() -> None:
    """Make ``ray.shutdown`` end this process's private cluster in a fraction of a second instead of 1-1.5 s.

    Ray ends its daemons one after another, waiting for each to exit after a
    SIGTERM. Kept here: the raylet first (it ends its workers and agents), then
    the GCS, each given SIGTERM and awaited, in that order (ended together, they
    hung for seconds). What is left (Ray's own reaper; with a full head the
    monitors and the API server) holds no state and gets SIGKILL, all at once.
    The driver's own disconnect, which ``ray.shutdown`` does first, is unchanged:
    ending the daemons before it made that wait 5 s for a raylet that was gone.
    """
    from ray._private import ray_constants
    from ray._private import worker as ray_worker

    node = getattr(ray_worker, "_global_node", None)
    if not isinstance(getattr(node, "all_processes", None), dict):
        return  # another Ray than the pinned one: its own shutdown
    in_order = (ray_constants.PROCESS_TYPE_RAYLET, ray_constants.PROCESS_TYPE_GCS_SERVER)

    def kill_all_processes(check_alive: bool = True, allow_graceful: bool = False, wait: bool = False) -> None:
        for kind in in_order:
            for info in node.all_processes.pop(kind, []):
                _end(info.process, grace_s=2.0)
        rest = [info.process for infos in node.all_processes.values() for info in infos]
        node.all_processes.clear()
        for process in rest:
            if process.poll() is None:
                process.kill()
        for process in rest:
            process.wait()

    node.kill_all_processes = kill_all_processes


def _end(process: subprocess.Popen, grace_s: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def worker_count(executor: Executor) -> tuple[int, float]:
    """(workers, GPUs each) for the connected cluster: 0 workers means one per GPU, else one per CPU."""
    import ray

    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    each = executor.gpus_per_worker if gpus > 0 else 0.0
    if executor.workers:
        return executor.workers, each
    if gpus > 0:
        return max(1, int(math.floor(gpus / each + 1e-9))), each
    return max(1, int(resources.get("CPU", 1))), 0.0


def worker_threads(spec: Any, workers: int) -> int:
    """torch threads per worker: :func:`engine.run.threads.thread_limit`, else a share of this host's cores."""
    threads = thread_limit(spec)
    return threads if threads is not None else max(1, (os.cpu_count() or 1) // workers)


def run_on_ray(queue: Queue, executor: Executor, *, log_dir: Path | None = None) -> bool:
    """Run the queue on the cluster ``executor`` names; True when it was stopped. Raises ClusterError.

    A cluster this process already joined (tests) is used as it is and left running.
    """
    if not executor.address and not _ray_initialized():
        _private_environment()  # before anything imports ray
    log_path = (log_dir or Path(tempfile.gettempdir())) / LOG_FILE
    with _RayLog(log_path) as ray_log:
        owns = not _ray_initialized()
        queue.emit(ev.BackendLoading("starting the Ray cluster" if owns else "joining the Ray cluster", 0.0))
        temp_dir = start_cluster(executor) if owns else None
        ray_log.attach()
        try:
            return _Driver(queue, executor).run()
        finally:
            if owns:
                stop_cluster(temp_dir, log_dir)


def _ray_initialized() -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    return ray.is_initialized()


class _Driver:
    def __init__(self, queue: Queue, executor: Executor) -> None:
        import ray

        from engine.run.executors.ray_worker import BatchWorker

        self.ray, self.actor_class = ray, BatchWorker
        self.queue, self.steering, self.executor = queue, queue.steering, executor
        self.emit = queue.emit
        self.inbox: queue_mod.Queue = queue_mod.Queue()
        self.workers: list[_Worker] = []
        self.retry: deque[tuple[list[str], int]] = deque()
        self.counter = 0  # workers started (names w1, w2, ...)
        self.tasks = 0
        self.replacements = 0
        self.announced = False  # the first worker's BackendReady stands for the cluster's
        self.stopping = False
        self.paused = False
        self.last_error = ""
        self.load_error: str | None = None  # the models failed to load on a worker: the run ends, resumable
        self.checked: set[str] = set()  # stories whose round trip has been announced

    # --- workers -------------------------------------------------------------
    def start_worker(self) -> None:
        self.counter += 1
        options: dict[str, Any] = {"num_cpus": 1}
        if self.gpus_each:
            options["num_gpus"] = self.gpus_each
        handle = self.actor_class.options(**options).remote(self.threads)
        worker = _Worker(f"w{self.counter}", handle)
        self.workers.append(worker)
        spec = self.queue.spec

        def prepare() -> None:
            try:
                self.inbox.put(("ready", worker, None, self.ray.get(handle.prepare.remote(spec))))
            except Exception as err:
                self.inbox.put(("prepare_failed", worker, None, err))

        threading.Thread(target=prepare, name=f"ray-{worker.name}-prepare", daemon=True).start()

    def ready_count(self) -> int:
        return sum(w.info is not None for w in self.workers)

    # --- batches -------------------------------------------------------------
    def next_names(self) -> tuple[list[str], int] | None:
        if self.retry:
            return self.retry.popleft()
        batch = self.queue.next_batch()
        if not batch:
            return None
        # More idle workers than kinds of batch: share this one out (inline keeps it whole).
        idle = sum(w.info is not None and w.task is None for w in self.workers)
        kinds = len({(e.story, e.method, e.bank) for e in self.queue.pending()})
        share = math.ceil(len(batch) / max(1, idle - kinds + 1))
        return [e.name for e in batch[:share]], 1

    def assign(self, worker: _Worker) -> bool:
        picked = self.next_names()
        if picked is None:
            return False
        names, attempt = picked
        if attempt == 1:
            self.queue.start([self.queue.experiments[n] for n in names])
        self.tasks += 1
        task = _Task(self.tasks, names, attempt)
        worker.task = task
        self.emit(ev.BatchAssigned(worker.name, tuple(names), worker.gpus, attempt))
        experiments = [self.queue.experiments[n] for n in names]
        spec = self.queue.spec

        def stream() -> None:
            try:
                for ref in worker.handle.run_batch.remote(task.id, experiments, spec):
                    self.inbox.put(("items", worker, task, self.ray.get(ref)))
                self.inbox.put(("done", worker, task, None))
            except Exception as err:
                self.inbox.put(("died" if self._is_death(err) else "error", worker, task, err))

        threading.Thread(target=stream, name=f"ray-{worker.name}-batch-{task.id}", daemon=True).start()
        return True

    def _is_death(self, err: BaseException) -> bool:
        exc = self.ray.exceptions
        return not isinstance(err, exc.RayTaskError) or isinstance(err, exc.RayActorError)

    def finish_rows(self, names: list[str], status: str, error: str | None) -> None:
        for name in names:
            if self.queue.status.get(name) in (ev.RUNNING, ev.PENDING):
                experiment = self.queue.experiments[name]
                row = result_row(experiment, self.queue.spec.story_of(experiment), status)
                if error is not None:
                    row["error"] = error
                self.queue.finish(row)

    # --- the loop ------------------------------------------------------------
    def run(self) -> bool:
        count, self.gpus_each = worker_count(self.executor)
        self.threads = worker_threads(self.queue.spec, count)
        for _ in range(count):
            self.start_worker()
        self.emit(ev.BackendLoading(f"loading models on {count} Ray workers", LOADING_START))
        try:
            while self.step():
                pass
        finally:
            for worker in self.workers:
                self._kill(worker)
        if self.load_error is not None:
            raise BackendError(self.load_error)
        return self.stopping and any(s in (ev.PENDING, ev.INTERRUPTED) for s in self.queue.status.values())

    def step(self) -> bool:
        """One turn: steering, hand out work, take what arrived. False once the queue is over."""
        self.queue.apply_edit()
        self.follow_pause()
        if self.steering.stop_requested and not self.stopping:
            self.stopping = True
            for worker in self.workers:
                if worker.task is not None:
                    worker.handle.signal.remote(worker.task.id, "stop")
            for names, _ in self.retry:
                self.finish_rows(names, ev.INTERRUPTED, None)
            self.retry.clear()
        self.skip()
        if not self.stopping and not self.paused:
            for worker in self.workers:
                if worker.info is not None and worker.task is None and not self.assign(worker):
                    break
        busy = any(w.task is not None for w in self.workers)
        if not busy and not self.retry:
            if self.stopping or not self.queue.pending():
                return False
            if not self.workers:  # every worker died and none could replace it
                self.queue.end_pending(ev.FAILED, error=self.last_error or "no Ray worker is left")
                return False
        try:
            message = self.inbox.get(timeout=POLL_S)
        except queue_mod.Empty:
            return True
        self.take(*message)
        return True

    def follow_pause(self) -> None:
        paused = self.steering.paused and not self.steering.stop_requested
        if paused != self.paused:
            self.paused = paused
            self.emit(ev.Paused(paused))

    def skip(self) -> None:
        running = frozenset(n for w in self.workers if w.task for n in w.task.left)
        waiting = frozenset(n for names, _ in self.retry for n in names)
        names = self.queue.take_skip(running | waiting)
        if not names:
            return
        for worker in self.workers:
            if worker.task is not None and names & set(worker.task.left):
                worker.handle.signal.remote(worker.task.id, sorted(names & set(worker.task.left)))
        kept: deque[tuple[list[str], int]] = deque()
        for left, attempt in self.retry:
            self.finish_rows([n for n in left if n in names], ev.SKIPPED, None)
            if [n for n in left if n not in names]:
                kept.append(([n for n in left if n not in names], attempt))
        self.retry = kept

    def take(self, kind: str, worker: _Worker, task: _Task | None, payload: Any) -> None:
        if worker not in self.workers:
            return  # a worker already given up on
        if kind == "ready":
            worker.info = payload
            self.announce(worker, payload)
        elif kind == "prepare_failed":
            if self._is_death(payload):
                self.died(worker, payload)
            else:  # the models do not load: nothing can run anywhere; what did not finish stays to be resumed
                self.load_error = one_line(payload.cause if hasattr(payload, "cause") and payload.cause else payload)
                for other in self.workers:
                    if other.task is not None:
                        self.finish_rows(other.task.left, ev.INTERRUPTED, None)
                        other.task = None
                self.retry.clear()
                self.stopping = True
        elif kind == "items":
            self.items(task, payload)
        elif kind == "done":
            if task.left:
                self.finish_rows(task.left, ev.FAILED, f"worker {worker.name} ended the batch without its results")
            worker.task = None
        elif kind == "error":
            self.finish_rows(task.left, ev.FAILED, one_line(payload))
            worker.task = None
        elif kind == "died":
            self.died(worker, payload)

    def announce(self, worker: _Worker, info: dict[str, Any]) -> None:
        if not self.announced:
            self.announced = True
            for data in info["events"]:
                event = ev.event_from_json(data)
                if isinstance(event, ev.BackendLoading):  # the worker's 0..1 after the cluster's start: 0.2..1
                    event = ev.BackendLoading(event.stage, LOADING_START + (1 - LOADING_START) * event.fraction)
                self.emit(event)
        self.emit(
            ev.WorkerStarted(
                worker.name, info["host"], int(info["pid"]), tuple(info["gpus"]), info["device"], self.ready_count()
            )
        )

    def items(self, task: _Task, items: list[dict[str, Any]]) -> None:
        for item in items:
            if "event" in item:
                event = ev.event_from_json(item["event"])
                if isinstance(event, ev.StoryChecked):  # each worker checks its stories; the run says it once
                    if event.story in self.checked:
                        continue
                    self.checked.add(event.story)
                self.emit(event)
            elif "finished" in item:
                result = item["finished"]
                task.finished.add(result["name"])
                self.queue.finish(result)
            elif "error" in item:
                self.finish_rows(task.left, ev.FAILED, item["error"])
                task.finished.update(task.names)

    def died(self, worker: _Worker, err: BaseException) -> None:
        error = f"worker {worker.name} died: {one_line(err)}"
        self.last_error = error
        self.workers.remove(worker)
        self._kill(worker)
        task, worker.task = worker.task, None
        left = task.left if task else []
        attempt = task.attempt if task else 0
        retry = bool(left) and attempt < self.executor.max_attempts and not self.stopping
        self.emit(
            ev.WorkerDied(
                worker.name, error, tuple(left), retry, attempt, self.executor.max_attempts, self.ready_count()
            )
        )
        if retry:
            self.retry.appendleft((left, attempt + 1))
        elif left:
            self.finish_rows(left, ev.INTERRUPTED if self.stopping else ev.FAILED, None if self.stopping else error)
        if not self.stopping and self.replacements < self.executor.max_attempts * max(1, self.counter):
            self.replacements += 1
            self.start_worker()

    def _kill(self, worker: _Worker) -> None:
        try:
            self.ray.kill(worker.handle)
        except Exception:  # already gone
            pass
