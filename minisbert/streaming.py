"""Embedding a corpus of any size: read, encode and write a chunk of texts at a time, resumably.

    minisbert encode -i corpus.jsonl --field text --id-field id -o my-index
    zcat corpus.txt.gz | minisbert encode -i - -o my-index --workers 2

The input is read as a stream (a file or standard input): text lines, or JSON lines with the
text in `field`. Texts are gathered into chunks of about `chunk_texts` (a chunk ends at the end
of an input line), each chunk is encoded and appended to OUTPUT.partial (see index.py), and a
checkpoint records how many input lines the index now covers. Memory holds one chunk (per
worker), whatever the size of the input.

After any interruption, Ctrl-C, kill -9, a full disk, the same command resumes: it reads the
input lines the checkpoint covers again, only to check that they are the same (a SHA-256 of
them), and encodes from the next one. Since chunks start and end at the same lines as in an
uninterrupted run, they make the same batches and the same vectors: the finished index is
identical, byte for byte.

Left out: input formats other than lines and JSON lines (CSV, Parquet: see distributed.py for
Ray Data, which reads them), and compressed files (pipe them through zcat).
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import json
import sys
from contextlib import closing
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path

from . import progress
from .errors import DiskFullError, InputFileError
from .index import PARTIAL, IndexWriter, SearchIndexError, model_identity
from .textfile import C0_CONTROL, binary_reason, refuse_binary, split_sentences

_BLOCK = 1 << 20  # bytes read from the input at a time


# ---------------------------------------------------------------------------- input

def decoded_lines(binary, name: str, encoding: str | None = None):
    """The lines of a binary stream, decoded, without their line ends: (line number, text).

    Decoded a block at a time, so memory holds one block and one line however big the input.
    encoding None means UTF-8, with or without a byte order mark. A block that looks binary
    (textfile.binary_reason: NULs, many control characters) is refused, whatever the encoding."""
    try:
        decoder = codecs.getincrementaldecoder(encoding or "utf-8-sig")(errors="strict")
    except LookupError:
        raise InputFileError(f"--encoding {encoding}: unknown encoding.") from None
    number, pending = 0, ""
    while True:
        block = binary.read(_BLOCK)
        try:
            text = pending + decoder.decode(block, final=not block)
        except UnicodeDecodeError as e:
            reason = binary_reason(block.decode("latin-1"), C0_CONTROL)  # a character per byte
            if reason:
                raise refuse_binary(name, reason, encoding or "utf-8") from None
            line = number + block[:e.start].count(b"\n") + 1
            bad = block[e.start:e.start + 4].hex(" ")
            raise InputFileError(
                f"{name} line {line}: not valid {encoding or 'utf-8'} ({bad} …); pass the "
                "input's encoding with --encoding, e.g. --encoding cp932 (Shift-JIS) or "
                "--encoding latin-1.") from None
        reason = binary_reason(text) if text else None  # refused, whatever the encoding
        if reason:
            raise refuse_binary(name, reason, encoding or "utf-8")
        lines = text.split("\n")
        pending = lines.pop()  # the unfinished last line, completed by the next block
        for line in lines:
            number += 1
            yield number, line
        if not block:
            if pending:
                yield number + 1, pending
            return


@dataclass
class Source:
    """Where the texts come from and how to read them."""
    path: str  # a file, or "-" for standard input
    field: str | None = None  # JSON lines: the key holding the text; None: plain text lines
    id_field: str | None = None  # JSON lines: the key holding each text's id, kept in ids.jsonl
    split: str = "lines"  # plain text: "lines" or "sentences"
    encoding: str | None = None
    skip_bad_lines: bool = False
    bad_lines: int = dataclass_field(default=0)  # skipped so far

    @property
    def name(self) -> str:
        return "standard input" if self.path == "-" else self.path

    def settings(self) -> dict:
        """What must not change between a run and its resumption."""
        return {"field": self.field, "id_field": self.id_field, "split": self.split,
                "encoding": self.encoding}

    def open(self):
        if self.path == "-":
            return sys.stdin.buffer
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            raise InputFileError(f"{self.path}: no such file.") from None

    def records(self, lines):
        """(line number, texts, ids) for each input line: the texts the line holds (none for a
        blank line, several for a line of sentences), and their ids (None without id_field)."""
        for number, line in lines:
            if self.field is None:
                line = line.strip()
                if not line:
                    yield number, [], None
                    continue
                # str.splitlines also ends lines at \r, \v, \f, \x1c-\x1e, \x85, \u2028/9,
                # as reading the whole file with splitlines did.
                texts = [t.strip() for t in line.splitlines() if t.strip()]
                if self.split == "sentences":
                    texts = [s for t in texts for s in split_sentences(t)]
                yield number, texts, None
                continue
            if not line.strip():
                yield number, [], None
                continue
            try:
                record = json.loads(line)
                problem = None
            except json.JSONDecodeError as e:
                record, problem = None, f"not JSON ({e.msg} at column {e.colno})"
            if problem is None:
                if not isinstance(record, dict):
                    problem = f"a JSON {type(record).__name__}, not an object"
                elif self.field not in record:
                    problem = f"no {self.field!r} field"
                elif not isinstance(record[self.field], str):
                    problem = f"{self.field!r} is a {type(record[self.field]).__name__}, not text"
                elif self.id_field is not None and self.id_field not in record:
                    problem = f"no {self.id_field!r} field"
            if problem is not None:
                if not self.skip_bad_lines:
                    raise InputFileError(
                        f"{self.name} line {number}: {problem}; fix the line, or pass "
                        "--skip-bad-lines to skip such lines.")
                self.bad_lines += 1
                yield number, [], None
                continue
            ids = None if self.id_field is None else [record[self.id_field]]
            yield number, [record[self.field].strip()], ids


class _Hashed:
    """Lines passed through, each added to a SHA-256 as it goes by."""

    def __init__(self, lines):
        self.lines = lines
        self.sha = hashlib.sha256()

    def __iter__(self):
        for number, line in self.lines:
            self.sha.update(line.encode("utf-8", "surrogatepass") + b"\n")
            yield number, line


def chunks(source: Source, lines: _Hashed, chunk_texts: int, start_line: int = 0):
    """Gather the texts of `lines` into chunks of at least chunk_texts texts (fewer at the
    end), each ending with an input line: (texts, ids, state), where state is what a
    checkpoint after this chunk records: the input lines it covers, their SHA-256, and how
    many were skipped as bad. (Taken as the chunk is made: worker processes may be encoding
    later chunks when this one is written.)"""
    texts, ids, number = [], [], start_line
    for number, line_texts, line_ids in source.records(lines):
        texts.extend(line_texts)
        if line_ids is not None:
            ids.extend(line_ids)
        if len(texts) >= chunk_texts:
            yield texts, ids, _state(number, lines, source)
            texts, ids = [], []
    if texts:
        yield texts, ids, _state(number, lines, source)


def _state(number: int, lines: _Hashed, source: Source) -> dict:
    return {"lines": number, "sha256": lines.sha.hexdigest(), "bad_lines": source.bad_lines}


def _count_nonblank_lines(path: str) -> int | None:
    """How many texts a plain or JSON-lines file holds, for the progress bar's ETA."""
    n = 0
    with open(path, "rb") as f:
        for line in f:
            n += bool(line.strip())
    return n


# ---------------------------------------------------------------------------- the job

@dataclass
class Summary:
    count: int  # texts in the index
    resumed_at: int  # texts already there from an earlier run (0: started afresh)
    bad_lines: int  # input lines skipped with --skip-bad-lines
    identity: dict
    output: Path


def encode_corpus(source: Source, output, model, folder, name: str | None = None, *,
                  chunk_texts: int = 1024, batch_size: int = 32, workers: int = 0,
                  prompt_name: str | None = None,
                  show_progress_bar: bool | None = None) -> Summary:
    """Embed every text of `source` with `model` (loaded from `folder`) into the index at
    `output`, resuming OUTPUT.partial if an earlier run left one. workers > 0: encode on that
    many worker processes (see workers.py); 0: in this process, on its threads. prompt_name:
    the model's prompt put before every text (None: the model's default prompt, if any)."""
    output = Path(output)
    prompt = model.resolve_prompt(prompt_name)  # an unknown name fails before any work
    identity = model_identity(model, folder, name)
    settings = {**source.settings(), "chunk_texts": chunk_texts, "batch_size": batch_size,
                "prompt": prompt}  # resuming with another prompt would mix two kinds of vector
    partial = Path(str(output) + PARTIAL)
    writer = None
    try:
        writer = IndexWriter(partial, identity, settings, with_ids=source.id_field is not None)
        resumed_at = writer.count
        state = writer.input_state
        with source.open() as binary:
            lines = _Hashed(decoded_lines(binary, source.name, source.encoding))
            if writer.resumed:  # skip the lines the index covers, checking they are the same
                for _ in zip(range(state["lines"]), lines):
                    pass
                if lines.sha.hexdigest() != state["sha256"]:
                    raise SearchIndexError(
                        f"{partial} is an unfinished index of another input: the first "
                        f"{state['lines']} lines of {source.name} are not the ones it was made "
                        f"from; give the same input to finish it, or delete {partial}.")
                source.bad_lines = state["bad_lines"]
            total = None
            bar_wanted = show_progress_bar or (show_progress_bar is None and sys.stderr.isatty())
            if bar_wanted and source.path != "-" and source.split == "lines":
                total = _count_nonblank_lines(source.path)
            bar = progress.ProgressBar(total, show_progress_bar, unit="texts", desc="Encoding",
                                       initial=writer.count)
            todo = chunks(source, lines, chunk_texts, state.get("lines", 0))
            # closing(): on an error, the worker processes stop now, not when collected
            with closing(_encoded(todo, model, folder, batch_size, workers, prompt)) as encoded:
                for (texts, ids, state), vectors in encoded:
                    writer.append(texts, vectors, ids if source.id_field else None)
                    writer.checkpoint(state)
                    bar.update(len(texts))
            bar.close()
        if writer.count == 0:
            raise InputFileError(f"{source.name}: no text to encode (every line is blank).")
        writer.finish(output, {"input": source.name, **source.settings(),
                               "bad_lines": source.bad_lines})
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            saved = writer.saved if writer else 0
            raise DiskFullError(
                f"{partial}: {e.strerror} with {saved} texts saved; the index so far is kept: make "
                "room and run the same command again to resume.") from None
        raise
    finally:
        if writer is not None:
            writer.close()
    return Summary(writer.count, resumed_at, source.bad_lines, identity, output)


def _encoded(todo, model, folder, batch_size: int, workers: int, prompt: str):
    """(chunk, vectors) for each chunk, in order: here, or on worker processes."""
    if workers <= 0:
        for chunk in todo:
            yield chunk, model.encode(chunk[0], batch_size=batch_size, prompt=prompt,
                                      show_progress_bar=False)
        return
    from .workers import WorkerPool
    with WorkerPool(folder, workers, batch_size, prompt) as pool:
        yield from pool.map(todo, key=lambda chunk: chunk[0])
