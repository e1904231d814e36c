"""`minisbert download` against a hub on 127.0.0.1, and where `--model NAME` finds a folder.

The fake hub serves the real all-MiniLM-L6-v2 folder in the hub's URL layout,
`/{name}/resolve/main/{file}`, answers 404 to everything else, honours `Range: bytes=N-`
(206), and can drop the connection part-way through a file once, as a flaky network does.
Like the real hub, it answers `/resolve/` for an LFS file (weights: *.safetensors, *.bin) with a
302 to its file storage (`/cdn/...`) carrying `X-Linked-Etag: "<sha256>"` and `X-Linked-Size`;
the file itself comes from there. It can also alter bytes of a file it serves, as a bad proxy
would.

Besides MiniLM as published, it serves folders in the other layouts `load` reads, built here
with NumPy from MiniLM's tensors: weights only as pytorch_model.bin (torch.save'd, so that case
needs torch), a sharded safetensors checkpoint, and a Dense module with its own weights and a
default prompt. Each is downloaded, then loaded with the hub stopped.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import shutil
import socket
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

import minisbert
from minisbert.weights import WEIGHT_FILES, read_safetensors
from minisbert import download as hub
from minisbert import locate
from minisbert.errors import DownloadError, ModelFileMissing

from cli_support import EXAMPLE, assert_one_line_error, run_cli

NAME = "sentence-transformers/all-MiniLM-L6-v2"
FILES = ["modules.json", "config.json", "model.safetensors", "tokenizer_config.json",
         "special_tokens_map.json", "vocab.txt", "tokenizer.json", "sentence_bert_config.json",
         "1_Pooling/config.json", "config_sentence_transformers.json"]


class FakeHub:
    def __init__(self, repos: dict[str, Path]):
        self.repos = repos  # hub name -> folder served under /{name}/resolve/main/
        self.log = []  # (file, Range header or None, status, bytes sent)
        self.honor_range = True
        self.drop_after = {}  # file -> bytes to send before hanging up, once
        self.lfs = (".safetensors", ".bin")  # files served by a redirect with X-Linked-Etag
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
        if file.endswith(self.lfs) and not path.startswith("/cdn/"):
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


@pytest.fixture(autouse=True)
def away_from_weights(tmp_path_factory, monkeypatch):
    """Run each test in an empty directory: a model the quick start put in the repository's
    weights/ would otherwise count as already downloaded."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


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
    # model.safetensors is there, so no other weight format is asked for.
    assert not [f for f in requested if "index.json" in f or f.endswith(".bin")]

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
        locate.find_model(NAME)
    places = [tmp_path / "cache" / NAME, Path("weights/all-MiniLM-L6-v2"), Path("weights") / NAME]
    for place in places:  # each new one takes precedence over those before
        place.parent.mkdir(parents=True, exist_ok=True)
        place.symlink_to(minilm_path, target_is_directory=True)
        assert locate.find_model(NAME) == place
    assert locate.find_model(str(minilm_path)) == minilm_path  # a folder is used as is
    # A download still in progress is not mistaken for a model.
    (tmp_path / "weights" / NAME).unlink()
    (tmp_path / "weights" / "all-MiniLM-L6-v2").unlink()
    (tmp_path / "cache" / NAME).unlink()
    (tmp_path / "cache" / NAME).mkdir()
    (tmp_path / "cache" / NAME / "model.safetensors.part").write_bytes(b"x")
    with pytest.raises(ModelFileMissing, match="incomplete"):
        locate.find_model(NAME)


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
    fake_hub.lfs = ()
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
    assert locate.missing_files(folder) == []
    (folder / "1_Pooling" / "config.json").unlink()
    (folder / "vocab.txt").unlink()
    assert locate.missing_files(folder) == ["1_Pooling/config.json"]  # tokenizer.json will do
    (folder / "tokenizer.json").unlink()
    assert locate.missing_files(folder) == ["1_Pooling/config.json",
                                         "vocab.txt or sentencepiece.bpe.model or "
                                         "vocab.json + merges.txt or tokenizer.json"]
    (folder / "model.safetensors").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    assert "model.safetensors (a Git LFS pointer)" in locate.missing_files(folder)
    (folder / "config.json.part").write_bytes(b"{")
    assert locate.missing_files(folder) == ["config.json.part"]


# ---------------------------------------------------------------------------- other layouts

def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """The safetensors container (8-byte header length, JSON header, raw data), float32 only."""
    tensors = {name: np.ascontiguousarray(t, dtype="<f4") for name, t in tensors.items()}
    header, offset = {}, 0
    for name, array in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for array in tensors.values():
            f.write(array.tobytes())


def minilm_tensors(minilm_path: Path) -> dict[str, np.ndarray]:
    tensors = read_safetensors(minilm_path / "model.safetensors")
    return {name: np.array(t, dtype=np.float32) for name, t in tensors.items()}


def copy_without_weights(minilm_path: Path, folder: Path) -> Path:
    return shutil.copytree(minilm_path, folder, ignore=shutil.ignore_patterns(
        "model.safetensors", "README.md", "data_config.json", ".gitattributes"))


def sharded_folder(minilm_path: Path, folder: Path, shards: int = 3) -> Path:
    """MiniLM with its tensors split over model-0000k-of-0000n.safetensors and an index."""
    copy_without_weights(minilm_path, folder)
    tensors = minilm_tensors(minilm_path)
    names = list(tensors)
    weight_map = {}
    for k in range(shards):
        shard = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = names[k::shards]
        write_safetensors(folder / shard, {n: tensors[n] for n in part})
        weight_map.update((n, shard) for n in part)
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
             "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return folder


def dense_folder(minilm_path: Path, folder: Path) -> Path:
    """MiniLM -> Pooling -> Dense 384 -> 16 (tanh, its own weights) -> Normalize, with e5-style
    prompts and a default prompt in config_sentence_transformers.json."""
    shutil.copytree(minilm_path, folder, ignore=shutil.ignore_patterns(
        "README.md", "data_config.json", ".gitattributes"))
    modules = json.loads((folder / "modules.json").read_text())
    modules[2:] = [{"idx": 2, "name": "2", "path": "2_Dense",
                    "type": "sentence_transformers.models.Dense"},
                   {"idx": 3, "name": "3", "path": "3_Normalize",
                    "type": "sentence_transformers.models.Normalize"}]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "config.json").write_text(json.dumps(
        {"in_features": 384, "out_features": 16, "bias": True,
         "activation_function": "torch.nn.modules.activation.Tanh"}))
    rng = np.random.default_rng(0)
    write_safetensors(folder / "2_Dense" / "model.safetensors",
                      {"linear.weight": rng.standard_normal((16, 384)) / 384 ** 0.5 * 8,
                       "linear.bias": rng.standard_normal(16) * 0.1})
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": "query"}))
    return folder


def bin_folder(minilm_path: Path, folder: Path) -> Path:
    """dense_folder with every module's weights as torch.save'd pytorch_model.bin only."""
    torch = pytest.importorskip("torch")
    dense_folder(minilm_path, folder)
    for weights in list(folder.rglob("model.safetensors")):
        tensors = read_safetensors(weights)
        torch.save({n: torch.from_numpy(np.array(t)) for n, t in tensors.items()},
                   weights.parent / "pytorch_model.bin")
        weights.unlink()
    return folder


LAYOUTS = {"sharded": sharded_folder, "dense": dense_folder, "pytorch_model.bin": bin_folder}
# What each layout's download fetches for its weights (after 404s for the formats before them).
WEIGHTS = {"sharded": ["model.safetensors.index.json", "model-00001-of-00003.safetensors",
                       "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"],
           "dense": ["model.safetensors", "2_Dense/model.safetensors"],
           "pytorch_model.bin": ["pytorch_model.bin", "2_Dense/pytorch_model.bin"]}
TEXTS = ["How fast is the NPU?", "Jupiter has more than ninety known moons.", "", "a"]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_download_then_load_offline_in_each_weight_layout(tmp_path, minilm_path, monkeypatch,
                                                          layout):
    source = LAYOUTS[layout](minilm_path, tmp_path / "source")
    name = f"someone/minilm-{layout.replace('_', '-').replace('.', '-')}"
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path / "cache"))
    server = FakeHub({name: source})
    try:
        log = io.StringIO()
        folder = hub.download(name, endpoint=server.endpoint, log=log)
        fetched = [f for f, _, status, _ in server.log if status in (200, 206)]
    finally:
        server.close()
    print(f"\n{log.getvalue()}")
    assert folder == tmp_path / "cache" / name
    # Every file the source holds came across whole, and each weight file with its SHA-256.
    want = sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())
    got = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert got == want
    for file in want:
        assert sha(folder / file) == sha(source / file), file
    assert [f for f in fetched if f in WEIGHTS[layout]] == WEIGHTS[layout]
    for file in WEIGHTS[layout]:
        if not file.endswith(".json"):
            assert re.search(rf"^{re.escape(file)}: [\d,]+ bytes, SHA-256 checked$", log.getvalue(),
                             re.M), file
    # Safetensors first: the other formats are asked for only after a 404 for those before.
    for prefix in {f.rpartition("/")[0] for f in WEIGHTS[layout]}:
        prefix = f"{prefix}/" if prefix else ""
        asked = [f for f in server.log if f[0].startswith(prefix)
                 and f[0].removeprefix(prefix) in WEIGHT_FILES]
        got_format = next(f for f in WEIGHTS[layout] if f.startswith(prefix)
                          and f.removeprefix(prefix) in WEIGHT_FILES)
        order = list(WEIGHT_FILES)
        skipped = order[:order.index(got_format.removeprefix(prefix))]
        assert [f[0] for f in asked if f[2] == 404] == [prefix + f for f in skipped]
    assert locate.missing_files(folder) == []

    # With the hub stopped: download finds the folder complete, and load reads it.
    log = io.StringIO()
    assert hub.download(name, endpoint=closed_endpoint(), log=log) == folder
    assert "is already complete" in log.getvalue()
    ours, original = minisbert.load(folder), minisbert.load(source)
    a, b = ours.encode(TEXTS), original.encode(TEXTS)
    print(f"{layout}: {ours}, dim {a.shape[1]}, maxdiff to the source folder "
          f"{np.abs(a - b).max():.1e}")
    assert np.array_equal(a, b)
    if layout != "sharded":  # the Dense module and the default prompt came along
        assert ours.dim == 16 and ours.default_prompt_name == "query"
        assert not np.allclose(a, ours.encode(TEXTS, prompt=""), atol=1e-3)
    else:  # the shards make the same model as MiniLM's single file
        assert np.array_equal(a, minisbert.load(minilm_path).encode(TEXTS))


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/tmp/outside.safetensors",
                                   "sub/model.safetensors", "..\\outside.safetensors"])
def test_shard_names_leading_outside_the_folder_are_refused(tmp_path, minilm_path, monkeypatch,
                                                            shard):
    source = sharded_folder(minilm_path, tmp_path / "source")
    index = json.loads((source / "model.safetensors.index.json").read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = shard
    (source / "model.safetensors.index.json").write_text(json.dumps(index))
    monkeypatch.setenv("MINISBERT_CACHE", str(tmp_path / "cache"))
    server = FakeHub({"someone/hostile": source})
    try:
        with pytest.raises(DownloadError, match="not a file name in the same folder; refusing"):
            hub.download("someone/hostile", endpoint=server.endpoint, log=io.StringIO())
    finally:
        server.close()
    asked = [f for f, *_ in server.log]
    print(f"\n{shard!r}: refused; asked for {asked[-1]} last")
    assert asked[-1] == "model.safetensors.index.json"  # no shard at all was requested
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "source"]
    assert not (tmp_path / "cache" / "someone" / "outside.safetensors").exists()


def test_missing_files_knows_shards_dense_weights_and_bin(tmp_path, minilm_path):
    sharded = sharded_folder(minilm_path, tmp_path / "sharded")
    assert locate.missing_files(sharded) == []
    (sharded / "model-00002-of-00003.safetensors").unlink()
    assert locate.missing_files(sharded) == ["model-00002-of-00003.safetensors"]

    dense = dense_folder(minilm_path, tmp_path / "dense")
    assert locate.missing_files(dense) == []
    (dense / "2_Dense" / "model.safetensors").unlink()
    (dense / "2_Dense" / "config.json").unlink()
    assert locate.missing_files(dense) == [
        "2_Dense/config.json", "2_Dense/model.safetensors (or model.safetensors.index.json, "
        "pytorch_model.bin, pytorch_model.bin.index.json)"]

    # pytorch_model.bin is weights too; a pointer in its place is not.
    (dense / "model.safetensors").rename(dense / "pytorch_model.bin")
    (dense / "2_Dense" / "config.json").write_text("{}")
    (dense / "2_Dense" / "pytorch_model.bin").write_bytes(b"PK")
    assert locate.missing_files(dense) == []
    (dense / "pytorch_model.bin").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    assert locate.missing_files(dense) == ["pytorch_model.bin (a Git LFS pointer)"]
