"""`minisbert download` against a hub on 127.0.0.1, and where `--model NAME` finds a folder.

The fake hub serves the real all-MiniLM-L6-v2 folder in the hub's URL layout,
`/{name}/resolve/main/{file}`, answers 404 to everything else, honours `Range: bytes=N-`
(206), and can drop the connection part-way through a file once, as a flaky network does.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
import urllib.parse
from pathlib import Path

import pytest

from minisbert import download as hub
from minisbert.errors import DownloadError, ModelFileMissing

from cli_support import EXAMPLE, assert_one_line_error, run_cli

NAME = "sentence-transformers/all-MiniLM-L6-v2"
FILES = ["modules.json", "config.json", "model.safetensors", "tokenizer_config.json",
         "special_tokens_map.json", "vocab.txt", "tokenizer.json", "sentence_bert_config.json",
         "1_Pooling/config.json"]


class FakeHub:
    def __init__(self, repos: dict[str, Path]):
        self.repos = repos  # hub name -> folder served under /{name}/resolve/main/
        self.log = []  # (file, Range header or None, status, bytes sent)
        self.honor_range = True
        self.drop_after = {}  # file -> bytes to send before hanging up, once
        hub_ = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hub_.serve(self)

            def log_message(self, *args):  # keep pytest's output clean
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, req):
        m = re.fullmatch(r"/(.+)/resolve/main/(.+)", urllib.parse.unquote(req.path))
        folder = self.repos.get(m.group(1)) if m else None
        path = (folder / m.group(2)).resolve() if folder else None
        if path is None or not path.is_file() or not path.is_relative_to(folder.resolve()):
            self.log.append((m.group(2) if m else req.path, None, 404, 0))
            req.send_error(404)
            return
        file, data = m.group(2), path.read_bytes()
        asked = req.headers.get("Range")
        start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1)) if asked else 0
        if asked and self.honor_range:
            req.send_response(206)
            req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            req.send_response(200)
            start = 0
        body = data[start:]
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if file in self.drop_after:  # promise the whole body, send part of it, hang up
            body = body[:self.drop_after.pop(file)]
            req.close_connection = True
        self.log.append((file, asked, 206 if asked and self.honor_range else 200, len(body)))
        req.wfile.write(body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub(minilm_path):
    server = FakeHub({NAME: minilm_path})
    yield server
    server.close()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same_files(got: Path, want: Path) -> None:
    for file in FILES:
        assert sha(got / file) == sha(want / file), file
    assert not list(got.rglob("*.part"))


def test_download_into_empty_cache_then_search_by_name(tmp_path, minilm_path, fake_hub):
    env = {"MINISBERT_CACHE": str(tmp_path / "cache"), "HF_ENDPOINT": fake_hub.endpoint}
    proc = run_cli("download", NAME, cwd=tmp_path, env=env)
    print(f"\n{proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "cache" / NAME
    assert proc.stdout.strip() == str(folder)
    assert_same_files(folder, minilm_path)
    requested = [f for f, *_ in fake_hub.log]
    assert requested[0] == "modules.json"  # it names the module folders to fetch
    assert ("sentencepiece.bpe.model", None, 404, 0) in fake_hub.log  # optional: a 404 is fine
    assert "README.md" not in requested and "data_config.json" not in requested

    # The name now resolves to the cache (cwd has no weights/): same answer as the folder itself.
    question = "How fast is the NPU?"
    by_name = run_cli("search", "-i", EXAMPLE, "--model", NAME, "-p", question, "-k", "2",
                      cwd=tmp_path, env=env)
    by_path = run_cli("search", "-i", EXAMPLE, "--model", minilm_path, "-p", question, "-k", "2")
    print(by_name.stdout)
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout == by_path.stdout and by_name.stdout.count("Text: ") == 2

    # A second run keeps what is there, and fetches nothing again.
    fake_hub.log.clear()
    proc = run_cli("download", NAME, cwd=tmp_path, env=env)
    assert proc.returncode == 0 and "model.safetensors: already here" in proc.stderr
    assert all(status == 404 for *_, status, _ in fake_hub.log)


@pytest.mark.parametrize("honor_range", [True, False])
def test_interrupted_download_resumes_from_part_file(tmp_path, minilm_path, fake_hub,
                                                     monkeypatch, honor_range):
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.honor_range = honor_range
    cut = 12_345_678
    fake_hub.drop_after["model.safetensors"] = cut
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        hub.download(NAME)
    part = tmp_path / NAME / "model.safetensors.part"
    assert part.stat().st_size == cut
    assert not (tmp_path / NAME / "model.safetensors").exists()  # never a half file by its name

    fake_hub.log.clear()
    folder = hub.download(NAME)
    assert_same_files(folder, minilm_path)
    size = (minilm_path / "model.safetensors").stat().st_size
    [(_, asked, status, sent)] = [e for e in fake_hub.log if e[0] == "model.safetensors"]
    print(f"\nsecond attempt: Range {asked!r} -> HTTP {status}, {sent:,} of {size:,} bytes sent")
    assert asked == f"bytes={cut}-"
    # With Range honoured only the rest travels; without, the whole file is fetched again.
    assert (status, sent) == ((206, size - cut) if honor_range else (200, size))


def test_offline_message_says_how_to_place_the_folder(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {"MINISBERT_CACHE": str(tmp_path / "cache"), "HF_ENDPOINT": closed}
    proc = run_cli("download", NAME, cwd=tmp_path, env=env)
    assert_one_line_error(proc, f"cannot reach {closed}", "offline", "weights/all-MiniLM-L6-v2",
                          str(tmp_path / "cache" / NAME))
    assert not (tmp_path / "cache" / NAME).exists()


def test_unknown_name_on_the_hub(tmp_path, fake_hub):
    env = {"MINISBERT_CACHE": str(tmp_path), "HF_ENDPOINT": fake_hub.endpoint}
    proc = run_cli("download", "someone/no-such-model", cwd=tmp_path, env=env)
    assert_one_line_error(proc, "no model 'someone/no-such-model'", "Check the name")


def test_find_model_lookup_order(tmp_path, minilm_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelFileMissing, match=f"run `minisbert download {NAME}`"):
        hub.find_model(NAME)
    places = [tmp_path / "cache" / NAME, Path("weights/all-MiniLM-L6-v2"), Path("weights") / NAME]
    for place in places:  # each new one takes precedence over those before
        place.parent.mkdir(parents=True, exist_ok=True)
        place.symlink_to(minilm_path, target_is_directory=True)
        assert hub.find_model(NAME) == place
    assert hub.find_model(str(minilm_path)) == minilm_path  # a folder is used as is
    # A download still in progress is not mistaken for a model.
    (tmp_path / "weights" / NAME).unlink()
    (tmp_path / "weights" / "all-MiniLM-L6-v2").unlink()
    (tmp_path / "cache" / NAME).unlink()
    (tmp_path / "cache" / NAME).mkdir()
    (tmp_path / "cache" / NAME / "model.safetensors.part").write_bytes(b"x")
    with pytest.raises(ModelFileMissing, match="incomplete"):
        hub.find_model(NAME)
