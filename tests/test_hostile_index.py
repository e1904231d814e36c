"""Index folders and unfinished encodes (OUTPUT.partial) changed by someone else: a link that
would redirect a write, sizes that would grow a file, JSON that is broken or of the wrong
type, names that point outside the folder. Each is refused with one SearchIndexError (so the
command line prints one `minisbert: error:` line), and nothing outside the folder is touched.
No model is needed: the writer and reader are driven directly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from minisbert.errors import MinisbertError
from minisbert.index import IndexWriter, SearchIndexError, read_index, write_index

from cli_support import assert_one_line_error, run_cli

MODEL = {"name": "test-model", "dim": 4, "fingerprint": "0123456789abcdef", "path": "/x"}
SETTINGS = {"field": None, "chunk_texts": 2}


def _unfinished(tmp_path: Path, with_ids: bool = False) -> Path:
    """OUT.partial holding 2 texts, as an interrupted `minisbert encode` leaves it."""
    partial = tmp_path / "out.partial"
    writer = IndexWriter(partial, MODEL, SETTINGS, with_ids=with_ids)
    writer.append(["one", "two"], np.ones((2, 4), np.float32), [1, 2] if with_ids else None)
    writer.checkpoint({"lines": 2, "sha256": "0" * 64, "bad_lines": 0})
    writer.close()
    return partial


def _resume(partial: Path, with_ids: bool = False):
    writer = IndexWriter(partial, MODEL, SETTINGS, with_ids=with_ids)
    writer.close()
    return writer


def _edit_progress(partial: Path, change) -> None:
    path = partial / "progress.json"
    progress = json.loads(path.read_text())
    change(progress)
    path.write_text(json.dumps(progress))


def test_a_resume_is_possible(tmp_path):
    """The control for the tests below: an untouched folder resumes."""
    writer = _resume(_unfinished(tmp_path))
    assert writer.count == 2 and writer.resumed


# ---------------------------------------------------------------------------- links

@pytest.mark.parametrize("name", ["embeddings.npy", "texts.jsonl", "progress.json",
                                  "progress.json.tmp"])
def test_a_link_in_the_partial_folder_is_refused_and_its_target_untouched(tmp_path, name):
    partial = _unfinished(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n" * 100)
    if name != "progress.json.tmp":  # (.tmp: where the next checkpoint is written first)
        (partial / name).unlink()
    (partial / name).symlink_to(victim)
    before = victim.read_bytes()
    with pytest.raises(SearchIndexError, match=r"link|not a regular file") as e:
        writer = IndexWriter(partial, MODEL, SETTINGS)
        try:
            writer.append(["three"], np.ones((1, 4), np.float32))
            writer.checkpoint({"lines": 3, "sha256": "0" * 64, "bad_lines": 0})
        finally:
            writer.close()
    print(f"\n{name}: {e.value}")
    assert victim.read_bytes() == before


def test_a_hard_link_in_the_partial_folder_is_refused(tmp_path):
    partial = _unfinished(tmp_path)
    victim = tmp_path / "victim.txt"
    os.link(partial / "texts.jsonl", victim)
    before = victim.read_bytes()
    with pytest.raises(SearchIndexError, match=r"links"):
        writer = IndexWriter(partial, MODEL, SETTINGS)
        writer.append(["three"], np.ones((1, 4), np.float32))
        writer.checkpoint({})
        writer.close()
    assert victim.read_bytes() == before


def test_the_partial_folder_itself_a_link_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    (tmp_path / "out.partial").symlink_to(elsewhere)
    with pytest.raises(SearchIndexError, match="link"):
        IndexWriter(tmp_path / "out.partial", MODEL, SETTINGS)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["keep.txt"]


# ---------------------------------------------------------------------------- progress.json

def test_sizes_larger_than_the_files_are_refused_not_grown(tmp_path):
    """truncate() to 10 GB would make embeddings.npy a 10 GB sparse file and report success."""
    partial = _unfinished(tmp_path)
    size = (partial / "embeddings.npy").stat().st_size
    _edit_progress(partial, lambda p: p["sizes"].update({"embeddings.npy": 10 * 2**30}))
    with pytest.raises(SearchIndexError, match=r"embeddings.npy") as e:
        _resume(partial)
    print(f"\n{e.value}")
    assert (partial / "embeddings.npy").stat().st_size == size


def test_a_count_that_disagrees_with_the_sizes_is_refused(tmp_path):
    partial = _unfinished(tmp_path)
    _edit_progress(partial, lambda p: p.update(count=1))
    with pytest.raises(SearchIndexError, match=r"progress.json"):
        _resume(partial)


@pytest.mark.parametrize("text", [
    "{not json", "[]", '"a string"', '{"count": "2"}', '{"count": 2}',
    '{"count": 2, "sizes": [], "model": {}, "settings": {}, "input": {}}',
    '{"count": -1, "sizes": {}, "model": {}, "settings": {}, "input": {}}',
])
def test_broken_progress_json_is_one_error(tmp_path, text):
    partial = _unfinished(tmp_path)
    (partial / "progress.json").write_text(text)
    with pytest.raises(SearchIndexError, match=r"progress.json") as e:
        _resume(partial)
    print(f"\n{text}: {e.value}")


def test_broken_progress_json_is_one_line_on_the_command_line(tmp_path, minilm_path):
    (tmp_path / "in.txt").write_text("one\ntwo\n")
    partial = tmp_path / "out.partial"
    partial.mkdir()
    (partial / "progress.json").write_text("{not json")
    proc = run_cli("encode", "-i", tmp_path / "in.txt", "-o", tmp_path / "out",
                   "--model", minilm_path)
    assert_one_line_error(proc, "progress.json", "delete")


# ---------------------------------------------------------------------------- index.json and files

def _index(tmp_path: Path) -> Path:
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    return write_index(tmp_path / "idx", ["a", "b", "c"], vectors, MODEL)


def _edit_meta(folder: Path, change) -> None:
    meta = json.loads((folder / "index.json").read_text())
    change(meta)
    (folder / "index.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("name", ["../../../../../../etc/passwd", "/etc/passwd", "..", "a/b",
                                  "..\\x"])
def test_index_json_may_name_only_its_own_files(tmp_path, name):
    folder = _index(tmp_path)
    _edit_meta(folder, lambda m: m["files"].update({name: 1}))
    with pytest.raises(SearchIndexError, match="not a file name") as e:
        read_index(folder)
    print(f"\n{name}: {e.value}")
    assert "bytes" not in str(e.value)  # nothing about the named file is told


@pytest.mark.parametrize("files", [[], "x", {"texts.jsonl": "12"}, None, {}])
def test_index_json_files_of_the_wrong_type(tmp_path, files):
    folder = _index(tmp_path)
    _edit_meta(folder, lambda m: m.update(files=files))
    with pytest.raises(SearchIndexError, match="index.json"):
        read_index(folder)


@pytest.mark.parametrize("key, value, fragments", [
    ("dim", 8, ["index.json says dim 8", "embeddings.npy", "4"]),
    ("dtype", "float16", ["index.json says dtype 'float16'", "float32"]),
    ("count", 5, ["(3, 4)", "5 texts"]),
])
def test_index_json_disagreeing_with_embeddings_names_both(tmp_path, key, value, fragments):
    folder = _index(tmp_path)
    _edit_meta(folder, lambda m: m.update({key: value}))
    with pytest.raises(SearchIndexError) as e:
        read_index(folder)
    print(f"\n{key}: {e.value}")
    for fragment in fragments:
        assert fragment in str(e.value)


def test_a_texts_line_that_is_not_json_is_one_error(tmp_path):
    folder = _index(tmp_path)
    lines = (folder / "texts.jsonl").read_text().splitlines()
    lines[1] = "{oops"
    (folder / "texts.jsonl").write_text("\n".join(lines) + "\n")
    size = (folder / "texts.jsonl").stat().st_size  # the sizes agree: only the line is wrong
    _edit_meta(folder, lambda m: m["files"].update({"texts.jsonl": size}))
    index = read_index(folder)
    with pytest.raises(SearchIndexError, match=r"texts.jsonl line 2: not JSON"):
        index.texts
    with pytest.raises(SearchIndexError, match=r"texts.jsonl line 2: not JSON"):
        index.texts_of([1])
    assert isinstance(SearchIndexError("x"), MinisbertError)
