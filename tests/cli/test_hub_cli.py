"""`backend.predictor = "owner/name"` through the real command: --check, offline runs, a download.

The cache is laid out by the ``hf_home`` fixture (tests/conftest.py) from the tiny predictor's
files. The download test serves those files from a local stand-in for the hub (``HF_ENDPOINT``),
so huggingface_hub's whole download path runs, with no network.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_cli import cli, events, only_run, results

COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
QUEUE = """[backend]
kind = "mini"
encoder = "tiny_encoder"
decoder = "tiny_decoder"
tokenizer = "tiny_encoder"
predictor = "{predictor}"
device = "cpu"

[stories.s]
sentences = ["Once upon a time, there was a little girl named Lily.", "She loved to play outside with her toys."]

[[experiments]]
name = "e"
init = "I like cheese."
steps = 2
decode_every = 2
"""


def write_config(folder: Path, predictor: str) -> Path:
    path = folder / "q.toml"
    path.write_text(QUEUE.format(predictor=predictor), encoding="utf-8")
    return path


class FakeHub:
    """Answers the three requests huggingface_hub makes (model info, HEAD and GET of a file) for one repo."""

    def __init__(self, repo: str, files: dict[str, bytes], chunk_delay: float = 0.0):
        self.repo, self.files, self.chunk_delay = repo, files, chunk_delay
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.answer(self, body=False)

            def do_GET(self) -> None:
                hub.answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = handler.path.split("?")[0]
        self.requests.append(f"{handler.command} {path}")
        if path.startswith("/api/models/") and not path.startswith(f"/api/models/{self.repo}/revision/main"):
            # What the hub answers for an unknown repo or revision (huggingface_hub reads X-Error-Code).
            known = path.startswith(f"/api/models/{self.repo}/")
            handler.send_response(404)
            handler.send_header("X-Error-Code", "RevisionNotFound" if known else "RepoNotFound")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if path.startswith(f"/api/models/{self.repo}/revision/"):
            siblings = [
                {"rfilename": n, "size": len(d), "blobId": hashlib.sha1(d).hexdigest()} for n, d in self.files.items()
            ]
            data = json.dumps({"id": self.repo, "sha": COMMIT, "siblings": siblings}).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        name = path.removeprefix(f"/{self.repo}/resolve/{COMMIT}/")
        if name not in self.files:
            handler.send_response(404)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = self.files[name]
        handler.send_response(200)
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            for start in range(0, len(data), 8192):  # slow enough for the progress poll to see bytes arrive
                handler.wfile.write(data[start : start + 8192])
                handler.wfile.flush()
                time.sleep(self.chunk_delay)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub(hf_home, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    files = {p.name: p.read_bytes() for p in sorted((tiny_dir / "predictor").iterdir())}
    files["training_state.pt"] = b"x" * 100_000  # in the repo, not needed: never fetched
    hub = FakeHub("owner/served", files, chunk_delay=0.15)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    yield hub
    hub.close()


def test_check_tells_a_hub_id_without_the_network(fake_hub: FakeHub, tmp_path: Path) -> None:
    write_config(tmp_path, "owner/served@main")
    proc = cli("--check", "q.toml", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: 1 experiment"), proc.stderr
    assert fake_hub.requests == []
    write_config(tmp_path, "owner/served@")
    proc = cli("--check", "q.toml", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f'q.toml:6: backend.predictor: "owner/served@" ({tmp_path}/owner/served@): '
        "predictor directory does not exist, nor is it a Hugging Face hub id (owner/name or owner/name@revision)"
    ]


def test_a_cached_hub_id_runs_offline_and_the_run_records_its_snapshot(hf_home, tiny_dir: Path, tmp_path: Path) -> None:
    snapshot = hf_home("owner/cached", tiny_dir / "predictor", COMMIT)
    write_config(tmp_path, "owner/cached")
    proc = cli("--no-ui", "--runs-dir", "runs", "q.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    backend = results(only_run(tmp_path / "runs"))["backend"]
    assert (backend["predictor"], backend["predictor_revision"]) == (str(snapshot), COMMIT)


def test_an_uncached_hub_id_offline_fails_in_one_line(hf_home, tmp_path: Path) -> None:
    write_config(tmp_path, "owner/absent@v1")
    proc = cli("--no-ui", "--runs-dir", "runs", "q.toml", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output
    failed = [line.split("] ", 1)[1] for line in output.splitlines() if "] backend failed:" in line]
    assert len(failed) == 1, output
    assert failed[0].startswith("backend failed: PredictorError: owner/absent@v1: not in the Hugging Face cache (")
    assert failed[0].endswith("and HF_HUB_OFFLINE is set; run once online to download it")


@pytest.mark.parametrize(
    "predictor, message",
    [
        ("owner/unknown", "owner/unknown: no such model on the Hugging Face hub"),
        ("owner/served@v9", "owner/served@v9: the Hugging Face hub has no revision 'v9' of owner/served"),
    ],
)
def test_an_unknown_repo_or_revision_online_fails_in_one_line(
    fake_hub: FakeHub, tmp_path: Path, predictor: str, message: str
) -> None:
    write_config(tmp_path, predictor)
    proc = cli("--no-ui", "--runs-dir", "runs", "q.toml", cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output, output
    (failed,) = [line.split("] ", 1)[1] for line in output.splitlines() if "] backend failed:" in line]
    assert failed.startswith(f"backend failed: PredictorError: {message}"), failed


def test_a_hub_id_downloads_only_what_it_needs_with_progress(fake_hub: FakeHub, tmp_path: Path) -> None:
    write_config(tmp_path, "owner/served")
    proc = cli("--no-ui", "--runs-dir", "runs", "q.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fetched = sorted(r.rsplit("/", 1)[1] for r in fake_hub.requests if r.startswith("GET /owner/served/resolve/"))
    assert fetched == ["config.json", "model.safetensors"]
    run = only_run(tmp_path / "runs")
    stages = [e["stage"] for e in events(run) if e["type"] == "backend_loading"]
    total = sum(len(fake_hub.files[n]) for n in fetched) / 1e3
    assert any(s.startswith("downloading owner/served ") and s.endswith(f"/{total:.1f} kB") for s in stages), stages
    snapshot = Path(results(run)["backend"]["predictor"])
    assert snapshot.parent.name == "snapshots" and snapshot.name == COMMIT
    assert (snapshot.parent.parent / "refs" / "main").read_text() == COMMIT

    # Now cached: the same id runs offline.
    write_config(tmp_path, "owner/served")
    offline = cli("--no-ui", "--runs-dir", "runs2", "q.toml", cwd=tmp_path)
    assert offline.returncode == 0, offline.stdout + offline.stderr
