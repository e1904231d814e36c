"""Big corpora: the streaming, resumable `minisbert encode`, worker processes, index integrity
and searching an index larger than the memory a process may use.

The texts are real: English messages of the gettext catalogs (tests/corpus.py). A resumed
index is compared with an uninterrupted one byte for byte; streamed embeddings are compared
with sentence-transformers run here on the same texts.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import minisbert
from minisbert.index import (SearchIndexError, check_model, model_identity, read_index,
                             write_index)
from minisbert.streaming import Source, encode_corpus

import corpus
from cli_support import ROOT, assert_one_line_error, run_cli

INDEX_FILES = ("embeddings.npy", "texts.jsonl", "ids.jsonl", "index.json")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """1200 distinct real texts, of many lengths."""
    return corpus.spread(corpus.lines(corpus.english("ja")), 1200)


def write_jsonl(path: Path, texts, bad: dict[int, str] | None = None) -> Path:
    """JSON lines {"id": "m<i>", "text": ...}; bad maps a 1-based line number to a raw line."""
    lines = [json.dumps({"id": f"m{i}", "text": t}, ensure_ascii=False)
             for i, t in enumerate(texts)]
    for number, raw in sorted((bad or {}).items()):
        lines.insert(number - 1, raw)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_same_index(a: Path, b: Path) -> None:
    """Every file of two index folders equal, byte for byte."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    print(f"\n{a.name} == {b.name}: {', '.join(names)} identical")


def encode_cli(inp, out, model, *extra, **kw):
    return run_cli("encode", "-i", inp, "-o", out, "--model", model, *extra, **kw)


# ---------------------------------------------------------------------------- streaming

def test_streamed_jsonl_index_matches_sentence_transformers(tmp_path, minilm_path, texts):
    st = pytest.importorskip("sentence_transformers")
    sample = texts[:300]
    src = write_jsonl(tmp_path / "in.jsonl", sample)
    model = minisbert.load(minilm_path)
    done = encode_corpus(Source(str(src), field="text", id_field="id"), tmp_path / "idx",
                         model, minilm_path, chunk_texts=64)
    index = read_index(tmp_path / "idx")
    ref = st.SentenceTransformer(str(minilm_path), device="cpu").encode(sample)
    diff = float(np.abs(index.embeddings - ref).max())
    print(f"\n{done.count} texts in chunks of 64 vs sentence-transformers: maxdiff = {diff:.2e}")
    assert diff <= 1e-5
    assert index.texts == [t.strip() for t in sample]
    assert index.ids == [f"m{i}" for i in range(len(sample))]
    assert index.version == 2 and np.load(tmp_path / "idx" / "embeddings.npy").shape == (300, 384)


def test_stdin_text_lines_with_progress_bar(tmp_path, minilm_path, texts):
    st = pytest.importorskip("sentence_transformers")
    sample = texts[300:400]
    stdin = "\ufeff" + "\n\n".join(sample) + "\n"  # a BOM, and blank lines that are skipped
    proc = encode_cli("-", tmp_path / "idx", minilm_path, "--chunk-texts", "30", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    assert "Wrote 100 texts x 384 dims" in proc.stderr
    index = read_index(tmp_path / "idx")
    assert index.texts == [t.strip() for t in sample] and index.ids is None
    ref = st.SentenceTransformer(str(minilm_path), device="cpu").encode(sample)
    assert float(np.abs(index.embeddings - ref).max()) <= 1e-5


def test_progress_bar_shows_rate_and_eta(tmp_path, minilm_path, texts, monkeypatch, capsys):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts[:200]) + "\n", encoding="utf-8")
    model = minisbert.load(minilm_path)
    encode_corpus(Source(str(src)), tmp_path / "idx", model, minilm_path, chunk_texts=20,
                  show_progress_bar=True)
    bar = capsys.readouterr().err.split("\r")[-1]
    print(f"\nlast bar: {bar!r}")
    assert "200/200 texts" in bar and "texts/s]" in bar and "<" in bar


def test_bad_json_lines_named_by_number_or_skipped_and_counted(tmp_path, minilm_path, texts):
    bad = {3: "{not json", 5: '["a list"]', 8: '{"id": "x"}', 9: '{"id": "y", "text": 7}'}
    src = write_jsonl(tmp_path / "in.jsonl", texts[:40], bad)
    args = ("--field", "text", "--id-field", "id", "--chunk-texts", "10")
    proc = encode_cli(src, tmp_path / "idx", minilm_path, *args)
    assert_one_line_error(proc, "in.jsonl line 3: not JSON", "--skip-bad-lines")
    for number, problem in [(5, "a JSON list, not an object"), (8, "no 'text' field"),
                            (9, "'text' is a int, not text")]:
        good = {k: v for k, v in bad.items() if k >= number}
        good_src = write_jsonl(tmp_path / f"in{number}.jsonl", texts[:40], good)
        proc = encode_cli(good_src, tmp_path / f"idx{number}", minilm_path, *args)
        assert_one_line_error(proc, f"line {number}: {problem}")

    proc = encode_cli(src, tmp_path / "idx", minilm_path, *args, "--skip-bad-lines")
    assert proc.returncode == 0, proc.stderr
    assert "skipped 4 bad lines" in proc.stderr
    index = read_index(tmp_path / "idx")
    assert index.ids == [f"m{i}" for i in range(40)]
    assert json.loads((tmp_path / "idx" / "index.json").read_text())["source"]["bad_lines"] == 4


def test_binary_input_is_refused_whatever_the_encoding(tmp_path, minilm_path):
    blob = tmp_path / "photo.jpg"
    blob.write_bytes(np.random.default_rng(0).integers(0, 256, 8000, dtype=np.uint8).tobytes())
    for encoding in [[], ["--encoding", "latin-1"]]:
        proc = encode_cli(blob, tmp_path / "idx", minilm_path, *encoding)
        assert_one_line_error(proc, "photo.jpg looks like a binary file", "NUL")
    proc = encode_cli("-", tmp_path / "idx", minilm_path, stdin="text\n" + "\0" * 100)
    assert_one_line_error(proc, "standard input looks like a binary file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]  # no index, no .partial


_STREAM_MEMORY = """
import json, sys, tracemalloc
import minisbert
from minisbert import streaming
from minisbert.streaming import Source, encode_corpus
folder, work = sys.argv[1:]
model = minisbert.load(folder)
streaming._BLOCK = 1 << 16  # 64 KiB read at a time: both inputs span several blocks
tracemalloc.start()
peaks = {}
for name in ("small", "large"):
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    done = encode_corpus(Source(f"{work}/{name}.txt"), f"{work}/{name}-idx", model, folder,
                         chunk_texts=256)
    peaks[name] = [done.count, tracemalloc.get_traced_memory()[1] - before]
print(json.dumps(peaks))
"""


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_streamed_encode_memory_does_not_grow_with_the_input(tmp_path, sp_model):
    """The same command on 1,000 lines of ~170 characters and on those lines ten times: the
    peak of the memory Python and NumPy allocate (tracemalloc) is the same within 256 KiB,
    while holding the 9,000 extra texts would take 1.5 MB and their vectors 1.2 MB. Memory holds one
    block of the input (1 MiB; 64 KiB here, so that both inputs span several blocks) and one
    chunk of texts; the vectors go to the file as each chunk is done."""
    pytest.importorskip("sentencepiece")
    import xlmr_folder
    folder = xlmr_folder.make_numpy_xlmr_folder(tmp_path / "model", sp_model, hidden=32,
                                                layers=1, heads=2, intermediate=64,
                                                max_seq_length=64, normalize=True)
    messages = corpus.lines(corpus.english("ja"))
    lines = [" ".join(messages[i:i + 8])[:200].strip() for i in range(1000)]
    assert len(set(lines)) > 950 and sum(map(len, lines)) > 150_000
    # The large input is the small one ten times: chunks of the same texts, ten times as many.
    (tmp_path / "small.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "large.txt").write_text("\n".join(lines * 10) + "\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-c", _STREAM_MEMORY, str(folder), str(tmp_path)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1",
                              "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    (small, small_peak), (large, large_peak) = json.loads(run.stdout).values()
    print(f"\npeak traced memory of encode_corpus: {small} lines {small_peak / 2**20:.2f} MiB, "
          f"{large} lines {large_peak / 2**20:.2f} MiB")
    assert (small, large) == (1000, 10_000)
    assert large_peak - small_peak <= 256 * 2**10


# ---------------------------------------------------------------------------- resuming

@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_killed_encode_resumes_to_an_identical_index(tmp_path, minilm_path, texts):
    """kill -9 in the middle, run the same command again: the index is the one an
    uninterrupted run makes, byte for byte."""
    src = write_jsonl(tmp_path / "in.jsonl", texts[:800])
    args = ("--field", "text", "--id-field", "id", "--chunk-texts", "50")
    whole = encode_cli(src, tmp_path / "whole", minilm_path, *args)
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "killed"
    progress = Path(str(out) + ".partial") / "progress.json"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "minisbert", "encode", "-i", str(src), "-o",
                             str(out), "--model", str(minilm_path), *args], env=env,
                            stderr=subprocess.DEVNULL)
    try:
        deadline, count = time.monotonic() + 120, 0
        while time.monotonic() < deadline and proc.poll() is None:
            if progress.is_file():
                count = json.loads(progress.read_text())["count"]
                if count >= 300:
                    break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and 300 <= count < 800, count
    with pytest.raises(SearchIndexError, match="unfinished one"):
        read_index(out)  # the half index is not where a search would load it

    again = encode_cli(src, out, minilm_path, *args)
    assert again.returncode == 0, again.stderr
    resumed = int(again.stderr.split(", ")[1].split()[0])  # "..., 350 of them from an earlier run"
    print(f"\nkilled after {count} texts; the rerun kept {resumed}")
    assert resumed >= count
    assert_same_index(tmp_path / "whole", out)
    assert not Path(str(out) + ".partial").exists()


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_worker_processes_give_the_threaded_index(tmp_path, minilm_path, texts):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts[:600]) + "\n", encoding="utf-8")
    model = minisbert.load(minilm_path)
    encode_corpus(Source(str(src)), tmp_path / "threads", model, minilm_path, chunk_texts=100)
    encode_corpus(Source(str(src)), tmp_path / "workers", model, minilm_path, chunk_texts=100,
                  workers=2)
    a, b = read_index(tmp_path / "threads"), read_index(tmp_path / "workers")
    print(f"\n--workers 2 vs threads: maxdiff = {np.abs(a.embeddings - b.embeddings).max():.1e}")
    assert_same_index(tmp_path / "threads", tmp_path / "workers")


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_resume_refuses_another_model_and_another_input(tmp_path, minilm_path, texts):
    """A bad line stops the run with the lines before it saved; resuming with another model
    or another input is refused; with --skip-bad-lines it finishes as a fresh run would."""
    from test_search import perturbed_copy
    src = write_jsonl(tmp_path / "in.jsonl", texts[:200], {151: "oops"})
    args = ("--field", "text", "--chunk-texts", "50")
    proc = encode_cli(src, tmp_path / "idx", minilm_path, *args)
    assert_one_line_error(proc, "line 151: not JSON")
    saved = json.loads((tmp_path / "idx.partial" / "progress.json").read_text())
    assert saved["count"] == 150

    other = perturbed_copy(minilm_path, tmp_path / "other-model")
    proc = encode_cli(src, tmp_path / "idx", other, *args, "--skip-bad-lines")
    assert_one_line_error(proc, "idx.partial is an unfinished index made with model 'model'",
                          "'other-model'", f"--model {minilm_path}")
    changed = write_jsonl(tmp_path / "changed.jsonl", texts[1:201], {151: "oops"})
    proc = encode_cli(changed, tmp_path / "idx", minilm_path, *args, "--skip-bad-lines")
    assert_one_line_error(proc, "unfinished index of another input", "first 150 lines")
    proc = encode_cli(src, tmp_path / "idx", minilm_path, "--field", "text", "--chunk-texts",
                      "60")
    assert_one_line_error(proc, "other settings", "chunk_texts: 50 then, 60 now")

    proc = encode_cli(src, tmp_path / "idx", minilm_path, *args, "--skip-bad-lines")
    assert proc.returncode == 0 and "150 of them from an earlier run" in proc.stderr, proc.stderr
    fresh = encode_cli(src, tmp_path / "fresh", minilm_path, *args, "--skip-bad-lines")
    assert fresh.returncode == 0, fresh.stderr
    assert_same_index(tmp_path / "fresh", tmp_path / "idx")


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_prompt_reaches_every_chunk_and_worker_and_a_resume_must_keep_it(tmp_path, minilm_path,
                                                                         texts):
    """--prompt-name puts the model's prompt before every text, in this process and on worker
    processes alike (each vector equals encode(..., prompt_name=...)); resuming an unfinished
    index with another prompt is refused, since it would mix two kinds of vector."""
    folder = tmp_path / "prompted"
    shutil.copytree(minilm_path, folder)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}))
    sample = texts[:120]
    src = write_jsonl(tmp_path / "in.jsonl", sample, {101: "oops"})
    args = ("--field", "text", "--chunk-texts", "50")
    proc = encode_cli(src, tmp_path / "idx", folder, *args, "--prompt-name", "query")
    assert_one_line_error(proc, "line 101: not JSON")
    proc = encode_cli(src, tmp_path / "idx", folder, *args, "--prompt-name", "passage",
                      "--skip-bad-lines")
    assert_one_line_error(proc, "other settings", "prompt")
    proc = encode_cli(src, tmp_path / "idx", folder, *args, "--prompt-name", "query",
                      "--skip-bad-lines")
    assert proc.returncode == 0, proc.stderr
    workers = encode_cli(src, tmp_path / "idx2", folder, *args, "--prompt-name", "query",
                         "--skip-bad-lines", "--workers", "2")
    assert workers.returncode == 0, workers.stderr
    assert_same_index(tmp_path / "idx", tmp_path / "idx2")

    model = minisbert.load(folder)
    want = model.encode(sample, prompt_name="query")
    got = np.load(tmp_path / "idx" / "embeddings.npy")
    plain = model.encode(sample)
    print(f"\nwith the prompt: maxdiff {np.abs(got - want).max():.2e}; "
          f"without: {np.abs(got - plain).max():.2e}")
    assert np.abs(got - want).max() <= 1e-6
    assert np.abs(got - plain).max() > 1e-3  # the prompt changed the vectors


def _limit_file_size():
    # Writes past 250 kB fail with EFBIG, instead of SIGXFSZ killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (250_000, 250_000))


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
@pytest.mark.parametrize("limit", ["tmpfs", "rlimit-fsize"])
def test_full_disk_stops_clearly_and_resumes(tmp_path, minilm_path, texts, limit):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts[:300]) + "\n", encoding="utf-8")
    args = ("--chunk-texts", "25")
    whole = encode_cli(src, tmp_path / "whole", minilm_path, *args)
    assert whole.returncode == 0, whole.stderr

    disk = tmp_path / "disk"
    disk.mkdir()
    if limit == "tmpfs":  # a 256 kB file system: 300 texts take ~480 kB
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        preexec = _limit_file_size if limit == "rlimit-fsize" else None
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "OPENBLAS_NUM_THREADS": "1"}
        full = subprocess.run([sys.executable, "-m", "minisbert", "encode", "-i", str(src), "-o",
                               str(disk / "idx"), "--model", str(minilm_path), *args],
                              capture_output=True, text=True, env=env, preexec_fn=preexec,
                              timeout=180)
        reason = "No space left on device" if limit == "tmpfs" else "File too large"
        assert_one_line_error(full, reason, "run the same command again to resume")
        kept = json.loads((disk / "idx.partial" / "progress.json").read_text())["count"]
        assert 0 < kept < 300 and f"with {kept} texts saved" in full.stderr
        with pytest.raises(SearchIndexError):
            read_index(disk / "idx")
        if limit == "tmpfs":
            subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        again = encode_cli(src, disk / "idx", minilm_path, *args)
        assert again.returncode == 0, again.stderr
        print(f"\n{limit}: stopped with {kept} texts saved; resumed: {again.stderr.strip()}")
        assert f"{kept} of them from an earlier run" in again.stderr
        assert_same_index(tmp_path / "whole", disk / "idx")
    finally:
        if limit == "tmpfs":
            subprocess.run(["umount", str(disk)], check=True)


# ---------------------------------------------------------------------------- integrity

IDENTITY = {"name": "test-model", "dim": 8, "fingerprint": "0123456789abcdef", "path": "/x"}


def write_v1_index(folder: Path, texts, embeddings, dim=None) -> Path:
    """An index in the layout minisbert 0.1 wrote (format version 1), written out here."""
    folder.mkdir(parents=True)
    np.save(folder / "embeddings.npy", embeddings)
    (folder / "texts.jsonl").write_text("".join(json.dumps(t) + "\n" for t in texts))
    meta = {"format": "minisbert-index", "version": 1, "count": len(texts),
            "model": {**IDENTITY, "dim": dim or embeddings.shape[1]}}
    (folder / "index.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def test_version_1_index_still_loads_and_searches(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    texts = [f"text {i}" for i in range(50)]
    index = read_index(write_v1_index(tmp_path / "v1", texts, vectors))
    assert index.version == 1 and index.texts == texts and index.ids is None
    np.testing.assert_array_equal(index.embeddings, vectors)
    hits = minisbert.semantic_search(vectors[7], index, top_k=3, corpus_chunk_size=16)[0]
    assert hits[0]["corpus_id"] == 7 and index.texts_of([7]) == {7: "text 7"}
    check_model(index, IDENTITY)


@pytest.mark.parametrize("damage, fragments", [
    ("truncated", ["embeddings.npy is incomplete", "bytes"]),
    ("float64", ["embeddings.npy holds float64, not float32"]),
    ("wrong dim", ["embeddings.npy has shape (50, 8), but index.json says 50 texts x 16 dims"]),
    ("fewer texts", ["texts.jsonl has 49 lines, but index.json says 50 texts"]),
])
def test_damaged_index_is_refused_naming_the_file(tmp_path, damage, fragments):
    vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    texts = [f"text {i}" for i in range(50)]
    folder = write_v1_index(tmp_path / "idx", texts[:49] if damage == "fewer texts" else texts,
                            vectors.astype(np.float64) if damage == "float64" else vectors,
                            dim=16 if damage == "wrong dim" else None)
    if damage == "fewer texts":  # index.json still says 50
        meta = json.loads((folder / "index.json").read_text())
        (folder / "index.json").write_text(json.dumps({**meta, "count": 50}))
    if damage == "truncated":
        with open(folder / "embeddings.npy", "r+b") as f:
            f.truncate(f.seek(0, os.SEEK_END) - 100)
    with pytest.raises(SearchIndexError) as e:
        read_index(folder)
    print(f"\n{damage}: {e.value}")
    for fragment in fragments:
        assert fragment in str(e.value)


def test_version_2_index_checks_file_sizes(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    write_index(tmp_path / "idx", [f"t{i}" for i in range(50)], vectors, IDENTITY)
    with open(tmp_path / "idx" / "texts.jsonl", "a") as f:
        f.write('"one more"\n')
    with pytest.raises(SearchIndexError, match=r"texts\.jsonl: \d+ bytes, but index.json says"):
        read_index(tmp_path / "idx")


def test_failed_write_leaves_the_old_index_whole(tmp_path):
    """Writing goes to a temporary folder renamed into place: a write that fails half way
    leaves the index that was there loadable and unchanged, and no temporary files."""
    vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    old = [f"old {i}" for i in range(50)]
    write_index(tmp_path / "idx", old, vectors, IDENTITY)
    broken = [f"new {i}" for i in range(49)] + [object()]  # not JSON: fails half way
    with pytest.raises(TypeError):
        write_index(tmp_path / "idx", broken, vectors[::-1], IDENTITY)
    index = read_index(tmp_path / "idx")
    assert index.texts == old
    np.testing.assert_array_equal(index.embeddings, vectors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


# ---------------------------------------------------------------------------- big indexes

@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_exact_search_over_an_index_larger_than_the_memory_limit(tmp_path):
    """A 600 MB index searched by a process whose address space is capped at 500 MB: the
    corpus is mapped a block at a time. Hits equal exact search done here without a limit."""
    rows, dim = 400_000, 384  # 614 MB of float32
    rng = np.random.default_rng(0)
    folder = tmp_path / "big"
    texts = [f"passage {i}" for i in range(rows)]
    writer_vectors = np.lib.format.open_memmap(tmp_path / "vectors.npy", mode="w+",
                                               dtype=np.float32, shape=(rows, dim))
    for r in range(0, rows, 50_000):
        writer_vectors[r:r + 50_000] = rng.normal(size=(min(50_000, rows - r), dim))
    queries = rng.normal(size=(5, dim)).astype(np.float32)
    writer_vectors[rows - 3] = queries[0]  # a planted exact match near the end
    write_index(folder, texts, writer_vectors, {**IDENTITY, "dim": dim})
    expected = minisbert.semantic_search(queries, writer_vectors, top_k=5)
    del writer_vectors
    (tmp_path / "vectors.npy").unlink()
    np.save(tmp_path / "queries.npy", queries)

    limit = 500 * 2**20
    size = (folder / "embeddings.npy").stat().st_size
    assert size > limit
    script = textwrap.dedent(f"""
        import json, resource, sys
        import numpy as np
        resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
        from minisbert import semantic_search
        from minisbert.index import read_index
        index = read_index({str(folder)!r})
        queries = np.load({str(tmp_path / "queries.npy")!r})
        if sys.argv[1] == "whole":
            hits = semantic_search(queries, index.embeddings, top_k=5)  # maps all 614 MB
        else:
            hits = semantic_search(queries, index, top_k=5)
        print(json.dumps(hits))
    """)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    whole = subprocess.run([sys.executable, "-c", script, "whole"], capture_output=True,
                           text=True, env=env, timeout=120)
    assert whole.returncode != 0 and "Error" in whole.stderr  # the limit bites
    blocks = subprocess.run([sys.executable, "-c", script, "blocks"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert blocks.returncode == 0, blocks.stderr
    hits = json.loads(blocks.stdout)
    print(f"\nindex {size / 2**20:.0f} MiB, limit {limit / 2**20:.0f} MiB; "
          f"whole-array mapping failed with: {whole.stderr.strip().splitlines()[-1]}")
    assert hits[0][0]["corpus_id"] == rows - 3
    for ours, ref in zip(hits, expected):
        assert [h["corpus_id"] for h in ours] == [h["corpus_id"] for h in ref]
        np.testing.assert_allclose([h["score"] for h in ours], [h["score"] for h in ref],
                                   rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- Ray

@pytest.mark.slow
def test_ray_cluster_embeds_a_dataset_as_one_process_does(tmp_path, minilm_path, texts):
    """A head node and a second node on 127.0.0.1, in a network namespace of their own;
    the index and the Parquet files they write hold the vectors `minisbert encode` makes."""
    pytest.importorskip("ray.data")
    pq = pytest.importorskip("pyarrow.parquet")
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip to give the cluster a network of its own")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace (needs root): {probe.stderr.strip()}")
    sample = texts[:500]
    src = write_jsonl(tmp_path / "in.jsonl", sample)
    single = encode_cli(src, tmp_path / "single", minilm_path, "--field", "text",
                        "--id-field", "id")
    assert single.returncode == 0, single.stderr

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    driver = f"ip link set lo up && exec {sys.executable} {ROOT / 'tests' / 'ray_cluster.py'} " \
             f"{minilm_path} {src} {tmp_path}"
    proc = subprocess.run(["unshare", "-n", "sh", "-c", driver], capture_output=True,
                          text=True, env=env, timeout=300)
    print(f"\n{proc.stdout.strip()}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cluster of 2 nodes up" in proc.stdout and "stopped; 0 processes left" in proc.stdout

    ours, ray_index = read_index(tmp_path / "single"), read_index(tmp_path / "index")
    diff = float(np.abs(ray_index.embeddings - ours.embeddings).max())
    print(f"Ray index vs minisbert encode: maxdiff = {diff:.1e}")
    np.testing.assert_array_equal(ray_index.embeddings, ours.embeddings)
    assert ray_index.texts == ours.texts and ray_index.ids == ours.ids
    table = pq.read_table(tmp_path / "parquet").to_pydict()
    assert table["id"] == ours.ids
    np.testing.assert_array_equal(np.array(table["embedding"], dtype=np.float32), ours.embeddings)


# ---------------------------------------------------------------------------- approximate

def test_approximate_index_finds_what_exact_search_finds(tmp_path, minilm_path, texts):
    """usearch's HNSW graph over 1100 real vectors, queried with 100 held-out ones: the same
    result format as semantic_search, and nearly the same neighbours (recall@10 >= 0.95)."""
    pytest.importorskip("usearch")
    from minisbert import ann
    model = minisbert.load(minilm_path)
    vectors = model.encode(texts)
    write_index(tmp_path / "idx", texts[:1100], vectors[:1100],
                model_identity(model, minilm_path))
    index = read_index(tmp_path / "idx")
    ann.build(index)
    graph = ann.load(read_index(tmp_path / "idx"))
    approx = graph.search(vectors[1100:], top_k=10)
    exact = minisbert.semantic_search(vectors[1100:], index, top_k=10)
    recall = np.mean([len({h["corpus_id"] for h in a} & {h["corpus_id"] for h in e}) / 10
                      for a, e in zip(approx, exact)])
    print(f"\nrecall@10 over {len(exact)} queries: {recall:.3f}")
    assert recall >= 0.95
    top = {h["corpus_id"]: h["score"] for h in exact[0]}
    for hit in approx[0]:
        if hit["corpus_id"] in top:  # usearch's cosine, 1 - distance, against ours
            assert abs(hit["score"] - top[hit["corpus_id"]]) < 1e-5
    # Writing the index again replaces its folder, graph included: no stale graph survives.
    write_index(tmp_path / "idx", texts[:1000], vectors[:1000], model_identity(model, minilm_path))
    with pytest.raises(SearchIndexError, match="has no approximate index"):
        ann.load(read_index(tmp_path / "idx"))
