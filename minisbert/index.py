"""A saved search index: texts, their embeddings, and which model made them.

An index is a folder (format version 2):
  embeddings.npy  float32 [n, dim], row i embeds text i. A plain .npy file, so `np.load` reads
                  it; minisbert opens it memory-mapped, or a block of rows at a time, so a big
                  index is searched straight from disk
  texts.jsonl     one JSON string per line
  ids.jsonl       optional: one JSON value per line, the id each text had in the input
  index.json      the model's identity (name, dim, fingerprint), the number of texts, the size
                  of every file, and where the texts came from

Version 1 (minisbert 0.1) had the same files less ids.jsonl and the sizes; it still loads.

Writing. An index grows in a folder beside its final place, OUTPUT.partial, and is renamed to
OUTPUT only when complete, so a crash never leaves a half index where a search would load it.
`IndexWriter` appends rows to embeddings.npy and texts.jsonl as they come and, after each chunk,
records in progress.json how many rows and bytes are complete (written beside it and renamed,
so it is always whole). Reopened after any interruption, the writer cuts the files back to
the last checkpoint and goes on from there. The .npy header is a fixed 128 bytes, written with
a row count of 0 and rewritten with the real one at the end: the number of texts need not be
known in advance (standard input), and the result is still one ordinary array file.
(Shards, one file per chunk, would do the same; one file keeps the index a single array for
`np.load`, NumPy's memmap and other tools, and searching it in blocks costs no more.)

Reading checks that the files agree (count, dtype, dimension, and that embeddings.npy holds
every row its header promises) and names the file at fault when they do not.

Vectors from two different models live in unrelated spaces: comparing them gives confident
nonsense, never an error. So an index remembers a fingerprint of its model's weights (computed
by fingerprint.py), and `check_model` refuses a query model whose fingerprint differs.

Left out: appending to a finished index, and any compression of the vectors.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import tempfile
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import SearchIndexError
from .fingerprint import model_fingerprint

FORMAT = "minisbert-index"
VERSION = 2
READABLE_VERSIONS = (1, 2)
_NPY_HEADER = 128  # bytes: room for any shape's digits, a multiple of 64 as .npy wants
PARTIAL = ".partial"  # OUTPUT.partial: an index being written
_MAX_PROGRESS_BYTES = 1 << 20  # progress.json: a few hundred bytes when minisbert writes it
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # open() fails on a symbolic link (not on Windows)


def model_identity(model, folder: str | os.PathLike, name: str | None = None) -> dict:
    """What an index records about the model that made it. `name` defaults to the folder's
    name; pass the hub name (e.g. "sentence-transformers/all-MiniLM-L6-v2") to record that."""
    folder = Path(os.path.abspath(folder))  # not resolve(): keep weights/x, not its link target
    return {"name": name or folder.name, "dim": model.dim,
            "fingerprint": model_fingerprint(folder), "path": str(folder)}


# ---------------------------------------------------------------------------- writing

def _npy_header(rows: int, dim: int) -> bytes:
    """A .npy (format 1.0) header for float32 [rows, dim], padded to exactly _NPY_HEADER bytes
    so that it can be rewritten in place once the row count is known."""
    text = repr({"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
    body_len = _NPY_HEADER - 10  # magic (6) + version (2) + header length (2)
    return (b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little")
            + text.ljust(body_len - 1).encode("latin-1") + b"\n")


def _write_json(path: Path, data: dict) -> None:
    """Write a JSON file whole or not at all: beside its name, flushed to disk, then renamed."""
    tmp = path.with_name(path.name + ".tmp")
    _refuse_link(tmp)
    if tmp.exists():  # left by a crash between writing and renaming
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise SearchIndexError(f"{path} is a symbolic link; minisbert writes an index only into "
                               "files of its own, so that nothing else is written through. "
                               "Remove the link and run the command again.")


def _open_work_file(path: Path, create: bool):
    """A file of OUTPUT.partial, opened to read and write. A link placed there would redirect
    the writes (and the truncation to the last checkpoint) to its target: refused, by
    O_NOFOLLOW where the system has it and by checking before opening where not, as is a
    second hard link or anything but a regular file (a FIFO, a device)."""
    _refuse_link(path)
    flags = os.O_RDWR | _NOFOLLOW | (os.O_CREAT | os.O_EXCL if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        raise SearchIndexError(f"{path}: missing from an unfinished index; delete "
                               f"{path.parent} to start over.") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EEXIST):  # a link slipped in since the check
            raise SearchIndexError(f"{path} is a symbolic link; remove it and run the command "
                                   "again.") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(info.st_mode) else \
            f"a file with {info.st_nlink} links (writing would change the other names too)"
        raise SearchIndexError(f"{path} is {what}; minisbert writes an index only into files of "
                               f"its own. Delete {path.parent} to start over.")
    return os.fdopen(fd, "r+b")


def _read_progress(partial: Path) -> dict | None:
    """progress.json of an unfinished index, checked (None when there is none)."""
    path = partial / "progress.json"
    if not partial.is_dir() or not (path.exists() or path.is_symlink()):
        return None
    retry = f"delete {partial} to start over."
    _refuse_link(path)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SearchIndexError(f"{path} is not a regular file; {retry}")
            raw = f.read(_MAX_PROGRESS_BYTES + 1)
    except OSError as e:
        raise SearchIndexError(f"{path}: cannot be read ({e.strerror}); {retry}") from None
    if len(raw) > _MAX_PROGRESS_BYTES:
        raise SearchIndexError(f"{path} is larger than {_MAX_PROGRESS_BYTES} bytes; {retry}")
    try:
        progress = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SearchIndexError(f"{path} is not valid JSON ({e}); the last checkpoint was not "
                               f"written by minisbert, or was damaged: {retry}") from None
    problem = _progress_problem(progress)
    if problem:
        raise SearchIndexError(f"{path}: {problem}; {retry}")
    return progress


def _progress_problem(progress) -> str | None:
    """What is wrong with progress.json's content, if anything."""
    def count(x):
        return type(x) is int and x >= 0
    if not isinstance(progress, dict):
        return f"a JSON {type(progress).__name__}, not an object"
    kinds = {"count": "a whole number", "sizes": "an object", "model": "an object",
             "settings": "an object", "input": "an object"}
    for key, kind in kinds.items():
        value = progress.get(key)
        if not (count(value) if key == "count" else isinstance(value, dict)):
            return f"{key!r} should be {kind}"
    if not all(isinstance(k, str) and count(v) for k, v in progress["sizes"].items()):
        return "'sizes' should map file names to byte counts"
    model = progress["model"]
    if not all(isinstance(model.get(k), str) for k in ("name", "fingerprint")):
        return "'model' lacks its name or fingerprint"
    return None


class IndexWriter:
    """Builds an index in `partial` (normally OUTPUT.partial) a chunk at a time.

        writer = IndexWriter(partial, model_identity, settings)   # resumes if it can
        for texts, vectors, ids in chunks[writer.count_so_far...]:
            writer.append(texts, vectors, ids)
            writer.checkpoint(input_state)       # what to skip in the input when resuming
        writer.finish(output)                     # renamed into place

    `settings` (the input's field names, split, chunk size ...) are stored with the progress;
    resuming with other settings, or another model, is refused, since the rows written so far
    would not match the rows still to come.
    """

    FILES = ("embeddings.npy", "texts.jsonl", "ids.jsonl")

    def __init__(self, partial: str | os.PathLike, model: dict, settings: dict | None = None,
                 with_ids: bool = False):
        self.partial = Path(partial)
        self.model = model
        self.settings = settings or {}
        self.with_ids = with_ids
        self.count = 0  # rows appended
        self.saved = 0  # rows made durable by the last checkpoint
        self.input_state: dict = {}  # the caller's resume state at the last checkpoint
        _refuse_link(self.partial)
        saved = _read_progress(self.partial)
        if saved and saved["count"]:
            self._reopen(saved)
        else:  # nothing to resume (or a start that stopped before its first chunk)
            shutil.rmtree(self.partial, ignore_errors=True)
            self.partial.mkdir(parents=True)
            self._files = {name: _open_work_file(self.partial / name, create=True)
                           for name in self._names()}
            self._files["embeddings.npy"].write(_npy_header(0, model["dim"]))
            self.checkpoint({})

    @property
    def resumed(self) -> bool:
        return bool(self.input_state)

    def _names(self):
        return [n for n in self.FILES if n != "ids.jsonl" or self.with_ids]

    def _reopen(self, progress: dict) -> None:
        made = progress["model"]
        if made["fingerprint"] != self.model["fingerprint"]:
            raise SearchIndexError(
                f"{self.partial} is an unfinished index made with model {made['name']!r} "
                f"(fingerprint {made['fingerprint']}), not {self.model['name']!r} (fingerprint "
                f"{self.model['fingerprint']}); finish it with --model "
                f"{made.get('path') or made['name']}, or delete {self.partial} to start over.")
        if progress["settings"] != self.settings:
            changed = sorted(k for k in set(progress["settings"]) | set(self.settings)
                             if progress["settings"].get(k) != self.settings.get(k))
            raise SearchIndexError(
                f"{self.partial} is an unfinished index made with other settings ("
                + ", ".join(f"{k}: {progress['settings'].get(k)!r} then, {self.settings.get(k)!r}"
                            " now" for k in changed)
                + f"); run the same command again to finish it, or delete {self.partial}.")
        self.count = self.saved = progress["count"]
        self.input_state = progress["input"]
        self._files = {}
        try:
            for name in self._names():
                self._files[name] = _open_work_file(self.partial / name, create=False)
            self._check_sizes(progress)
        except BaseException:
            for f in self._files.values():
                f.close()
            self._files = {}
            raise
        for name, f in self._files.items():
            f.truncate(progress["sizes"][name])  # drop what was written after the checkpoint
            f.seek(0, os.SEEK_END)

    def _check_sizes(self, progress: dict) -> None:
        """The checkpoint's sizes must be what its count of rows takes, and at most what the
        files hold (a size past the end would grow the file, not cut it back)."""
        where = f"{self.partial / 'progress.json'}"
        retry = f"delete {self.partial} to start over."
        rows = _NPY_HEADER + progress["count"] * self.model["dim"] * 4
        for name, f in self._files.items():
            size, have = progress["sizes"].get(name), os.fstat(f.fileno()).st_size
            if size is None:
                raise SearchIndexError(f"{where} records no size for {name}; {retry}")
            if size > have:
                raise SearchIndexError(f"{where} says {name} holds {size} bytes, but it has "
                                       f"{have}; {retry}")
            if name == "embeddings.npy" and size != rows:
                raise SearchIndexError(f"{where} says {name} holds {size} bytes, but "
                                       f"{progress['count']} rows of {self.model['dim']} take "
                                       f"{rows}; {retry}")
            if name != "embeddings.npy":
                lines = _count_newlines(f, size)
                if lines != progress["count"]:
                    held = f"{lines} lines" if lines >= 0 else "a line cut in the middle"
                    raise SearchIndexError(f"{where} says {progress['count']} texts, but the "
                                           f"first {size} bytes of {name} hold {held}; {retry}")

    def append(self, texts: list[str], embeddings: np.ndarray, ids: list | None = None) -> None:
        embeddings = np.ascontiguousarray(embeddings, dtype="<f4")
        if embeddings.shape != (len(texts), self.model["dim"]):
            raise ValueError(f"embeddings have shape {embeddings.shape}; expected "
                             f"({len(texts)}, {self.model['dim']}), one row per text")
        if self.with_ids and (ids is None or len(ids) != len(texts)):
            raise ValueError("this index keeps an id per text; pass one id per text")
        self._files["embeddings.npy"].write(embeddings.tobytes())
        self._files["texts.jsonl"].write(
            "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts).encode())
        if self.with_ids:
            self._files["ids.jsonl"].write(
                "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in ids).encode())
        self.count += len(texts)

    def checkpoint(self, input_state: dict) -> None:
        """Make the rows appended so far durable, with what the caller needs to resume after
        them (how many input lines they came from, ...). Until the next checkpoint, a crash
        loses only the rows appended since."""
        sizes = {}
        for name, f in self._files.items():
            f.flush()
            os.fsync(f.fileno())
            sizes[name] = f.tell()
        _write_json(self.partial / "progress.json",
                    {"count": self.count, "sizes": sizes, "model": self.model,
                     "settings": self.settings, "input": input_state})
        self.input_state, self.saved = input_state, self.count

    def finish(self, output: str | os.PathLike, source: dict | None = None) -> Path:
        """Complete the files, write index.json and rename the folder to `output` (replacing
        an index there, if any)."""
        emb = self._files["embeddings.npy"]
        emb.seek(0)
        emb.write(_npy_header(self.count, self.model["dim"]))
        sizes = {}
        for name, f in self._files.items():
            f.flush()
            os.fsync(f.fileno())
            sizes[name] = os.fstat(f.fileno()).st_size
            f.close()
        meta = {"format": FORMAT, "version": VERSION, "count": self.count,
                "dim": self.model["dim"], "dtype": "float32", "model": self.model,
                "files": sizes, "source": source or {}}
        _write_json(self.partial / "index.json", meta)
        (self.partial / "progress.json").unlink()
        output = Path(output)
        old = None
        if output.exists():  # out of the way first: os.replace cannot replace a folder
            old = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.old-"))
            os.replace(output, old / "index")
        os.replace(self.partial, output)
        if old is not None:
            shutil.rmtree(old)  # a search still mapping the old embeddings keeps reading them
        return output

    def close(self) -> None:
        """Close the files, leaving the folder as it was at the last checkpoint (resumable);
        a folder that holds no text yet is removed."""
        for f in self._files.values():
            try:
                f.close()
            except OSError:  # a full disk: what could not be flushed is past the checkpoint
                pass
        if self.saved == 0 and self.partial.is_dir():
            shutil.rmtree(self.partial, ignore_errors=True)


def write_index(folder: str | os.PathLike, texts: list[str], embeddings: np.ndarray,
                model: dict, ids: list | None = None) -> Path:
    """Save texts and their embeddings (from the model described by `model`) as an index.
    It is built in a temporary folder beside `folder` and renamed into place when complete."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-")) / "index"
    writer = IndexWriter(partial, model, with_ids=ids is not None)
    try:
        writer.append(list(texts), embeddings, ids)
        writer.checkpoint({"texts": len(texts)})
        return writer.finish(folder)
    finally:
        writer.close()
        shutil.rmtree(partial.parent, ignore_errors=True)


# ---------------------------------------------------------------------------- reading

def _npy_layout(path: Path) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, offset of the data) from a .npy file's header; checks the file holds
    every byte the header promises."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as e:
        raise SearchIndexError(f"{path}: not a readable .npy file ({e}); the index is damaged, "
                               "make it again with `minisbert encode`.") from None
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size != expected:
        raise SearchIndexError(
            f"{path} is {'incomplete' if size < expected else 'too long'}: {size} bytes, but its "
            f"header promises {shape} {dtype} ({expected} bytes); the index is damaged, make it "
            "again with `minisbert encode`.")
    if fortran:
        raise SearchIndexError(f"{path}: stored column-major; an index stores rows.")
    return shape, dtype, offset


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return n


def _count_newlines(f, size: int) -> int:
    """How many lines the first `size` bytes of the open file `f` hold; -1 when they end
    inside a line."""
    n, left, last = 0, size, b"\n"
    f.seek(0)
    while left > 0 and (block := f.read(min(1 << 20, left))):
        n += block.count(b"\n")
        last, left = block[-1:], left - len(block)
    return n if last == b"\n" else -1


def _read_jsonl(path: Path) -> list:
    with open(path, encoding="utf-8") as f:
        return [_json_line(path, number, line) for number, line in enumerate(f, 1)]


def _json_line(path: Path, number: int, line: str):
    try:
        return json.loads(line)
    except ValueError as e:
        raise SearchIndexError(f"{path} line {number}: not JSON ({_clip(str(e))}); the index "
                               "is damaged, make it again with `minisbert encode`.") from None


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _is_own_file_name(name) -> bool:
    """A plain file name inside the index folder: no folder part, no "..", nothing absolute."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and not any(c in name for c in "/\\\0") and os.path.basename(name) == name)


class Index:
    """An index folder, opened. Nothing big is read at open: `embeddings` memory-maps the
    whole array, `blocks()` maps one block of rows at a time (for indexes larger than the
    address space a process may use), `texts` and `ids` read their files on first use, and
    `texts_of(rows)` reads only the texts asked for."""

    def __init__(self, path: Path, meta: dict, offset: int):
        self.path = path
        self.version = meta["version"]
        self.model = meta["model"]  # model_identity() of the model that made the embeddings
        self.count = meta["count"]
        self.dim = meta["model"]["dim"]
        self.has_ids = (path / "ids.jsonl").is_file()
        self._offset = offset  # where the rows start in embeddings.npy

    def __len__(self):
        return self.count

    @cached_property
    def embeddings(self) -> np.ndarray:  # [n, dim], memory-mapped
        return np.memmap(self.path / "embeddings.npy", dtype="<f4", mode="r",
                         offset=self._offset, shape=(self.count, self.dim))

    def blocks(self, rows: int = 65_536):
        """(first row, float32 [<=rows, dim]) for each block of rows in turn; each block is
        mapped alone and unmapped when the next one comes."""
        for start in range(0, self.count, rows):
            n = min(rows, self.count - start)
            yield start, np.memmap(self.path / "embeddings.npy", dtype="<f4", mode="r",
                                   offset=self._offset + start * self.dim * 4, shape=(n, self.dim))

    @cached_property
    def texts(self) -> list[str]:
        return _read_jsonl(self.path / "texts.jsonl")

    @cached_property
    def ids(self) -> list | None:
        return _read_jsonl(self.path / "ids.jsonl") if self.has_ids else None

    def texts_of(self, rows) -> dict[int, str]:
        """{row: text} for the rows asked for, reading texts.jsonl line by line."""
        if "texts" in self.__dict__:
            return {r: self.texts[r] for r in rows}
        wanted, found = set(rows), {}
        with open(self.path / "texts.jsonl", encoding="utf-8") as f:
            for row, line in enumerate(f):
                if row in wanted:
                    found[row] = _json_line(self.path / "texts.jsonl", row + 1, line)
                    if len(found) == len(wanted):
                        break
        return found


def _meta_problem(meta: dict) -> str | None:
    """What is wrong with the types of index.json's values, if anything."""
    def whole(x):
        return type(x) is int and x >= 0
    model = meta.get("model")
    if not whole(meta.get("count")):
        return "'count' should be a whole number"
    if not (isinstance(model, dict) and whole(model.get("dim"))
            and all(isinstance(model.get(k), str) for k in ("name", "fingerprint"))):
        return "'model' should hold the model's name, fingerprint and dim"
    files = meta.get("files", {})
    if not (isinstance(files, dict) and all(whole(size) for size in files.values())):
        return "'files' should map file names to byte counts"
    if "dim" in meta and not whole(meta["dim"]):
        return "'dim' should be a whole number"
    if meta["version"] >= 2 and not {"embeddings.npy", "texts.jsonl"} <= set(files):
        return "'files' should give the sizes of embeddings.npy and texts.jsonl"
    return None


def read_index(folder: str | os.PathLike) -> Index:
    """Open an index folder (format version 1 or 2) after checking that its files agree."""
    folder = Path(folder)
    if not (folder / "index.json").is_file():
        hint = ""
        if Path(str(folder) + PARTIAL).is_dir():
            hint = (f" {folder}{PARTIAL} is an unfinished one: run the `minisbert encode` that "
                    "made it again to finish it.")
        raise SearchIndexError(f"{folder} is not a minisbert index (no index.json); make one "
                               f"with `minisbert encode -i FILE -o FOLDER`.{hint}")
    damaged = "the index is damaged, make it again with `minisbert encode`."
    where = folder / "index.json"
    try:
        meta = json.loads(where.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
        if meta.get("format") != FORMAT or meta.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"format {_clip(repr(meta.get('format')))} version "
                             f"{_clip(repr(meta.get('version')))}; this minisbert reads versions "
                             f"{READABLE_VERSIONS}")
        problem = _meta_problem(meta)
        if problem:
            raise ValueError(problem)
        count, dim = meta["count"], meta["model"]["dim"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SearchIndexError(f"{where}: unreadable ({_clip(str(e), 200)}); {damaged}") from None
    files = meta.get("files", {})  # version 2 records every file's size
    for name in files:  # before any is opened: index.json names only files of its own folder
        if not _is_own_file_name(name):
            raise SearchIndexError(f"{where} lists {_clip(repr(name))}, which is not a file name "
                                   f"in the index folder; {damaged}")
    for name in ("embeddings.npy", "texts.jsonl"):
        if not (folder / name).is_file():
            raise SearchIndexError(f"{folder / name}: no such file; {damaged}")
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            have = f"{path.stat().st_size} bytes" if path.is_file() else "missing"
            raise SearchIndexError(f"{path}: {have}, but index.json says {size} bytes; {damaged}")
    shape, dtype, offset = _npy_layout(folder / "embeddings.npy")
    embeddings = folder / "embeddings.npy"
    if dtype != np.dtype("<f4"):
        raise SearchIndexError(f"{embeddings} holds {dtype}, not float32; {damaged}")
    if meta.get("dtype", "float32") != "float32":  # version 1 did not say: always float32
        raise SearchIndexError(f"{where} says dtype {_clip(repr(meta['dtype']))}, but "
                               f"{embeddings} holds {dtype} (an index holds float32); {damaged}")
    if shape != (count, dim):
        raise SearchIndexError(f"{embeddings} has shape {shape}, but index.json says {count} "
                               f"texts x {dim} dims; {damaged}")
    if meta.get("dim", dim) != dim:  # version 2 says it twice: the index's and its model's
        raise SearchIndexError(f"{where} says dim {meta['dim']}, but {embeddings} has shape "
                               f"{shape}, rows of {dim}, as its model's dim says; {damaged}")
    names = ["texts.jsonl"] + (["ids.jsonl"] if (folder / "ids.jsonl").is_file() else [])
    for name in names:
        lines = _count_lines(folder / name)
        if lines != count:
            raise SearchIndexError(f"{folder / name} has {lines} lines, but index.json says "
                                   f"{count} texts; {damaged}")
    return Index(folder, meta, offset)


def check_model(index: Index, model: dict) -> None:
    """Refuse to search `index` with vectors from a model other than the one that made it."""
    made = index.model
    if made["fingerprint"] != model["fingerprint"] or made["dim"] != model["dim"]:
        raise SearchIndexError(
            f"{index.path} was made with model {made['name']!r} (fingerprint "
            f"{made['fingerprint']}, dim {made['dim']}), not with {model['name']!r} (fingerprint "
            f"{model['fingerprint']}, dim {model['dim']}); its vectors are not comparable. "
            f"Search it with --model {made.get('path') or made['name']}, or rebuild it with the "
            "model you want.")
