"""The run directory under faults: an I/O error at each write site, a lock against a second process, damaged files,
a full or private bank cache, and a queue long enough to show anything quadratic. Tiny real models, real files.

Faults are injected at the operating system's interface (``os.write``, ``os.open``, ``os.replace`` of one named
file), the way SQLite's test VFS injects them: everything above (the store, the session, the engine) is the real code.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.files import write_atomic
from engine.rundir.store import EVENTS_FILE, RESULTS_FILE, RunStore, StorageError, StoreError

QUEUE = """
[defaults]
steps = 4
decode_every = 2

[[experiments]]
name = "a"
story = "s"
init = "I like cheese."

[[experiments]]
name = "b"
story = "s"
init = "There was a boy named Tom."
lr = 0.05

[[experiments]]
name = "c"
story = "t"
init = "I like cheese."

[[experiments]]
name = "d"
story = "t"
init = "Begin of text."
steps = 6
"""


def tiny_config(tiny_dir: Path, experiments: str) -> str:
    return f"""[backend]
encoder = "tiny_encoder"
decoder = "tiny_decoder"
tokenizer = "tiny_encoder"
predictor = "{tiny_dir / "predictor"}"
device = "cpu"

[stories.s]
sentences = ["There was a boy named Tom.", "I like cheese.", "Begin of text."]

[stories.t]
sentences = ["Begin of text.", "There was a boy named Tom.", "I like cheese."]
{experiments}"""


def run_queue_in(folder: Path, tiny_dir: Path, body: str = QUEUE) -> Path:
    from engine.run.session import Session

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "q.toml"
    config.write_text(tiny_config(tiny_dir, body), encoding="utf-8")
    session = Session.start(config, folder / "runs")
    session.run()
    return session.run_dir


def rows(run_dir: Path) -> dict[str, dict]:
    data = json.loads((run_dir / RESULTS_FILE).read_text(encoding="utf-8"))
    return {r["name"]: {k: v for k, v in r.items() if k != "seconds"} for r in data["experiments"]}


def events_on_disk(run_dir: Path) -> list[dict]:
    out = []
    for line in (run_dir / EVENTS_FILE).read_bytes().split(b"\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line torn by the fault
    return out


@pytest.fixture(scope="module")
def reference(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The queue run once, uninterrupted and unharmed."""
    return rows(run_queue_in(tmp_path_factory.mktemp("reference"), tiny_dir))


class Faults:
    """Fail the ``nth`` call of ``op`` ("write", "create" or "rename") on a file whose name contains ``name``
    (for a write, among those whose data holds ``marker``) with the OSError of ``code``."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, op: str, name: str, nth: int, code: int, marker: bytes = b""
    ) -> None:
        self.op, self.name, self.nth, self.code, self.calls, self.fired = op, name, nth, code, 0, False
        real_write, real_open, real_replace = os.write, os.open, os.replace

        def write(fd: int, data: bytes) -> int:
            if marker in bytes(data):
                self._maybe("write", os.readlink(f"/proc/self/fd/{fd}"))
            return real_write(fd, data)

        def open_(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
            if flags & os.O_CREAT:
                self._maybe("create", str(path))
            return real_open(path, flags, *args, **kwargs)

        def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
            self._maybe("rename", str(dst))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "open", open_)
        monkeypatch.setattr(os, "replace", replace)

    def _maybe(self, op: str, path: str) -> None:
        if op == self.op and self.name in os.path.basename(path):
            self.calls += 1
            if self.calls == self.nth:
                self.fired = True
                raise OSError(self.code, os.strerror(self.code))


SITES = {  # (operation, file, nth, error, the data a failing write holds)
    "events.jsonl full mid-run": ("write", EVENTS_FILE, 12, errno.ENOSPC, b'"type":"step"'),  # d's 2nd step
    "events.jsonl full at a finish": ("write", EVENTS_FILE, 1, errno.EIO, b'"name":"c","status":"done"'),
    "results.json full": ("write", "results.json", 3, errno.ENOSPC, b""),
    "results.md cannot be created": ("create", "results.md", 3, errno.EROFS, b""),
    "results.csv cannot be renamed": ("rename", "results.csv", 4, errno.EACCES, b""),
    "embeddings full": ("write", "embeddings.safetensors", 2, errno.EDQUOT, b""),
}


@pytest.mark.parametrize("site", sorted(SITES))
def test_an_io_error_at_each_write_site_stops_the_run_and_resume_loses_nothing(
    site: str, tiny_dir: Path, tmp_path: Path, reference: dict[str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.run.session import Session

    op, name, nth, code, marker = SITES[site]
    config = tmp_path / "q.toml"
    config.write_text(tiny_config(tiny_dir, QUEUE), encoding="utf-8")
    session = Session.start(config, tmp_path / "runs")
    with monkeypatch.context() as patch:
        faults = Faults(patch, op, name, nth, code, marker)
        with pytest.raises(StorageError) as raised:
            session.run()
    assert faults.fired
    message = str(raised.value)
    assert message.startswith(str(session.run_dir / name)) and os.strerror(code) in message
    assert "\n" not in message
    finished = [e for e in events_on_disk(session.run_dir) if e["type"] == "experiment_finished"]
    assert finished and len(finished) < 4  # the fault stopped the run part-way
    assert {e["status"] for e in finished} == {"done"}  # a storage fault is never an experiment's failure

    resumed = Session.resume(session.run_dir)
    assert resumed.run().status == "done"
    assert rows(session.run_dir) == reference  # nothing lost, nothing different


def test_a_second_process_on_a_run_directory_is_refused_naming_the_holder(tiny_dir: Path, tmp_path: Path) -> None:
    run_dir = run_queue_in(tmp_path, tiny_dir)
    holder = RunStore.open(run_dir)
    with pytest.raises(StoreError, match=rf"in use by process {os.getpid()} \(one process runs a run directory"):
        RunStore.open(run_dir)
    holder.close()  # released: another may take it now, as after the holder's crash (the kernel drops a flock)
    RunStore.open(run_dir).close()


def test_atomic_writes_of_two_writers_never_trip_over_each_others_temp_file(tmp_path: Path) -> None:
    path, errors = tmp_path / "results.md", []

    def writer(text: str) -> None:
        try:
            for _ in range(300):
                write_atomic(path, text)
        except OSError as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(f"writer {n}\n" * 50,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and path.read_text() in {"writer 0\n" * 50, "writer 1\n" * 50}
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]  # no temp file left behind


def damage(run_dir: Path) -> None:
    """A hand edit and a flipped byte that still parse as JSON."""
    lines = (run_dir / EVENTS_FILE).read_text(encoding="utf-8").splitlines()
    finished = [i for i, line in enumerate(lines) if '"type":"experiment_finished"' in line]
    step = next(i for i, line in enumerate(lines) if '"type":"step"' in line)
    lines[step] = lines[step].replace('"step":', '"step":"one",', 1)  # a step that is not a number
    c = json.loads(lines[finished[2]])
    c["result"]["z"] = "not a vector"  # the third experiment's finish: damaged, so it must run again
    lines[finished[2]] = json.dumps(c, separators=(",", ":"))
    lines.insert(5, "[1, 2, 3]")  # JSON, but not an event
    (run_dir / EVENTS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = json.loads((run_dir / RESULTS_FILE).read_text(encoding="utf-8"))
    data["experiments"][0]["final_sim"] = 0.999  # a hand edit
    data["experiments"][1]["trajectory"] = "garbage"
    (run_dir / RESULTS_FILE).write_text(json.dumps(data), encoding="utf-8")


def test_resume_on_damaged_files_trusts_events_skips_what_is_damaged_and_rebuilds_the_results(
    tiny_dir: Path, tmp_path: Path, reference: dict[str, dict]
) -> None:
    from engine.run.session import Session

    run_dir = run_queue_in(tmp_path, tiny_dir)
    damage(run_dir)
    session = Session.resume(run_dir)
    warnings = "\n".join(session.store.warnings)
    assert "events.jsonl: skipped 2 damaged lines" in warnings
    assert "a experiment_finished event that cannot apply" in warnings
    assert "results.json: disagrees with events.jsonl; rebuilt from it" in warnings
    assert sorted(session.store.completed) == ["a", "b", "d"]  # c's finish was damaged: it runs again
    assert session.run().status == "done"
    assert rows(run_dir) == reference


def test_a_results_json_that_claims_more_than_the_events_is_not_trusted(tiny_dir: Path, tmp_path: Path) -> None:
    from engine.run.session import Session

    run_dir = run_queue_in(tmp_path, tiny_dir)
    lines = (run_dir / EVENTS_FILE).read_text(encoding="utf-8").splitlines()
    cut = next(i for i, line in enumerate(lines) if '"type":"experiment_finished"' in line and '"name":"c"' in line)
    (run_dir / EVENTS_FILE).write_text("\n".join(lines[:cut]) + "\n", encoding="utf-8")  # as if killed before c
    session = Session.resume(run_dir)
    assert sorted(session.store.completed) == ["a", "b"]
    session.store.close()


def test_a_queue_of_any_length_writes_the_same_bytes_per_experiment(tiny_dir: Path, tmp_path: Path) -> None:
    """Events that grew with the queue (each finish restated every status) made a long run quadratic."""

    def queue(n: int) -> str:
        experiments = "".join(f'[[experiments]]\nname = "e{i}"\nstory = "s"\ninit = "Hi."\n' for i in range(n))
        return f"[defaults]\nsteps = 1\ndecode_every = 1\n{experiments}"

    sizes = {}
    for n in (40, 200):
        run_dir = run_queue_in(tmp_path / str(n), tiny_dir, queue(n))
        sizes[n] = (run_dir / EVENTS_FILE).stat().st_size / n
    assert sizes[200] < 1.1 * sizes[40], sizes


def test_a_private_bank_stays_private_in_the_cache_and_a_full_cache_costs_only_the_cache(
    tiny_dir: Path, tmp_path: Path
) -> None:
    from engine.banks.bank import load_bank
    from engine.run.backend import load_models
    from engine.spec import Backend

    models = load_models(
        Backend(
            encoder="tiny_encoder",
            decoder="tiny_decoder",
            tokenizer="tiny_encoder",
            predictor=str(tiny_dir / "predictor"),
            device="cpu",
        )
    )
    bank = tmp_path / "private.txt"
    bank.write_text("".join(f"Secret sentence number {i}.\n" for i in range(300)), encoding="utf-8")
    bank.chmod(0o600)

    def load(cache: Path):  # noqa: ANN202
        return load_bank(str(bank), tmp_path, models.space, encoder="tiny_encoder", dtype="float32", cache_dir=cache)

    with file_size_limit(16 << 10):  # texts and offsets fit, the embeddings do not: a write fails with EFBIG
        full = load(tmp_path / "full")
    assert not full.cached and "File too large" in (full.uncached or "")
    assert not any((tmp_path / "full").glob("*/manifest.json"))  # nothing half-built left as an entry

    cached = load(tmp_path / "cache")
    assert cached.uncached is None and full.texts(range(len(full))) == cached.texts(range(len(cached)))
    assert full.embeddings.equal(cached.embeddings)
    for path in _tree(cached.folder):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))  # readable by the bank's owner only, like the bank


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process: a write past ``limit`` bytes fails with EFBIG (its signal ignored), as a
    write to a full disk fails with ENOSPC. Real faults from the kernel, for the length of the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _tree(folder: Path) -> Iterator[Path]:
    yield folder
    yield from folder.iterdir()
