"""`minisbert download` against a hub on 127.0.0.1, and where `--model NAME` finds a folder.

The fake hub serves the real all-MiniLM-L6-v2 folder in the hub's URL layout,
`/{name}/resolve/main/{file}`, answers 404 to everything else, honours `Range: bytes=N-`
(206), and can drop the connection part-way through a file once, as a flaky network does.
Like the real hub, it answers `/resolve/` for an LFS file (model.safetensors) with a 302 to its
file storage (`/cdn/...`) carrying `X-Linked-Etag: "<sha256>"` and `X-Linked-Size`; the file
itself comes from there. It can also alter bytes of a file it serves, as a bad proxy would.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import shutil
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
        self.lfs = {"model.safetensors"}  # files served by a redirect with X-Linked-Etag
        self.corrupt = {}  # file -> byte offset flipped in what is served (the etag stays)
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
        path = urllib.parse.unquote(req.path)
        m = re.fullmatch(r"/(?:cdn/)?(.+)/resolve/main/(.+)", path)
        folder = self.repos.get(m.group(1)) if m else None
        file_path = (folder / m.group(2)).resolve() if folder else None
        if file_path is None or not file_path.is_file() or \
                not file_path.is_relative_to(folder.resolve()):
            self.log.append((m.group(2) if m else req.path, None, 404, 0))
            req.send_error(404)
            return
        file, data = m.group(2), file_path.read_bytes()
        asked = req.headers.get("Range")
        if file in self.lfs and not path.startswith("/cdn/"):
            # The hub's answer for an LFS file: the content's SHA-256 and size, and where it is.
            req.send_response(302)
            req.send_header("Location", "/cdn" + req.path)
            req.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
            req.send_header("X-Linked-Size", str(len(data)))
            req.send_header("Content-Length", "0")
            req.end_headers()
            self.log.append((file, asked, 302, 0))
            return
        if file in self.corrupt:
            at = self.corrupt[file]
            data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
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
    proc_stderr = proc.stderr
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

    # The large file was checked against the SHA-256 the hub published on its redirect.
    assert ("model.safetensors", None, 302, 0) in fake_hub.log
    assert "model.safetensors: 90,868,376 bytes, SHA-256 checked" in proc_stderr

    # A second run finds the model complete, says so, and asks the hub nothing.
    fake_hub.log.clear()
    proc = run_cli("download", NAME, cwd=tmp_path, env=env)
    print(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(folder)
    assert f"{NAME} is already complete in {folder}" in proc.stderr
    assert fake_hub.log == []


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
    [(_, asked, status, sent)] = [e for e in fake_hub.log
                                  if e[0] == "model.safetensors" and e[2] != 302]
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


# ---------------------------------------------------------------------------- integrity

def closed_endpoint() -> str:
    with socket.socket() as s:  # a port nobody listens on: the machine is offline
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_corrupted_file_fails_its_sha256_and_is_deleted(tmp_path, minilm_path, fake_hub,
                                                        monkeypatch):
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.corrupt["model.safetensors"] = 50_000_000  # one byte flipped, size unchanged
    with pytest.raises(DownloadError) as e:
        hub.download(NAME)
    print(f"\n{e.value}")
    published = sha(minilm_path / "model.safetensors")
    assert f"does not match the hub's {published}" in str(e.value)
    assert "deleted model.safetensors.part" in str(e.value)
    assert not (tmp_path / NAME / "model.safetensors").exists()
    assert not (tmp_path / NAME / "model.safetensors.part").exists()

    del fake_hub.corrupt["model.safetensors"]  # the next run fetches it whole, and it checks out
    assert_same_files(hub.download(NAME), minilm_path)


def test_interrupted_download_resumed_onto_a_stale_part_is_caught(tmp_path, minilm_path,
                                                                  fake_hub, monkeypatch):
    """A .part from an earlier attempt whose bytes are not the file's (an older revision, a
    bad disk): resuming splices the right tail onto it, and only the SHA-256 can tell."""
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    cut = 30_000_000
    fake_hub.drop_after["model.safetensors"] = cut
    with pytest.raises(DownloadError, match="interrupted|connection ended"):
        hub.download(NAME)
    part = tmp_path / NAME / "model.safetensors.part"
    assert part.stat().st_size == cut
    stale = bytearray(part.read_bytes())
    stale[1234] ^= 0xFF
    part.write_bytes(bytes(stale))

    fake_hub.log.clear()
    with pytest.raises(DownloadError, match="SHA-256 .* does not match .*deleted "
                                            "model.safetensors.part"):
        hub.download(NAME)
    assert ("model.safetensors", f"bytes={cut}-", 206,
            (minilm_path / "model.safetensors").stat().st_size - cut) in fake_hub.log
    assert not part.exists() and not (tmp_path / NAME / "model.safetensors").exists()
    assert_same_files(hub.download(NAME), minilm_path)  # and the next run starts afresh


def test_a_file_without_published_sha256_is_checked_by_size(tmp_path, minilm_path, fake_hub,
                                                            monkeypatch, capsys):
    """A mirror that serves the file directly, with no X-Linked-Etag: size only, and it says so."""
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path))
    fake_hub.lfs = set()
    hub.download(NAME, endpoint=fake_hub.endpoint)
    err = capsys.readouterr().err
    print(err)
    assert "model.safetensors: 90,868,376 bytes, size checked" in err


def test_download_of_a_model_already_complete_says_so_offline(tmp_path, minilm_path):
    env = {"MINISBERT_CACHE": str(tmp_path / "cache"), "HF_ENDPOINT": closed_endpoint()}
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "all-MiniLM-L6-v2").symlink_to(minilm_path, target_is_directory=True)
    proc = run_cli("download", NAME, cwd=tmp_path, env=env)
    print(f"\n{proc.stderr}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "weights/all-MiniLM-L6-v2"
    assert f"{NAME} is already complete in weights/all-MiniLM-L6-v2" in proc.stderr

    # An incomplete folder is no reason to stop: the download goes ahead (and here, offline, fails).
    (tmp_path / "weights" / "all-MiniLM-L6-v2").unlink()
    shutil.copytree(minilm_path, tmp_path / "weights" / "all-MiniLM-L6-v2",
                    ignore=shutil.ignore_patterns("model.safetensors"))
    proc = run_cli("download", NAME, cwd=tmp_path, env=env)
    assert_one_line_error(proc, "cannot reach", "offline")


def test_missing_files_names_what_load_would_lack(tmp_path, minilm_path):
    folder = shutil.copytree(minilm_path, tmp_path / "m")
    assert hub.missing_files(folder) == []
    (folder / "1_Pooling" / "config.json").unlink()
    (folder / "vocab.txt").unlink()
    assert hub.missing_files(folder) == ["1_Pooling/config.json",
                                         "vocab.txt or sentencepiece.bpe.model"]
    (folder / "model.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    assert "model.safetensors (a Git LFS pointer)" in hub.missing_files(folder)
    (folder / "config.json.part").write_bytes(b"{")
    assert hub.missing_files(folder) == ["config.json.part"]
