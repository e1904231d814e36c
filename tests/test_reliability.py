"""Issue 7: bad input and broken model folders get clear errors, and nothing is silently wrong.

Which test covers which case. Tests of other files are named with their file; [x] is the case
named x in `minilm_cases`, the table test_folder_error (API) and test_cli_folder_errors run.

Texts
- encode([]) is an empty (0, dim) float32 array: test_empty_input
- a non-string item raises TypeError naming its index: test_non_string_item_names_its_index
- "" and white space only embed as the special tokens alone, as in sentence-transformers:
  test_odd_texts_match_sentence_transformers
- NUL, U+FFFD, right-to-left text, combining marks, emoji joiner sequences: the same test (MiniLM
  ids and embeddings); test_properties.py (the three front ends on random strings)
- surrogates (a lone one becomes U+FFFD, a pair its character): the two above, and
  test_surrogates_are_rejected_by_the_reference
- a text far beyond max_seq_length is cut with ONE warning per process, naming the tokens cut
  and max_seq_length: test_truncation_warns_once_per_process,
  test_cli_truncation_warning_is_one_line (the cut ids: test_bert_tokenizer.py, test_xlmr.py)
- thousands of long texts: memory grows with the output and the ids, not with the texts:
  test_memory_does_not_grow_with_the_input

Model folders: one exception of a minisbert.errors type, whose message names the file and what to do
- folder does not exist: test_folder_error (API); test_cli.py::test_user_errors_are_one_line
- missing config.json, model.safetensors, vocab.txt (tokenizer.json removed too, so that the
  vocab.txt front end reads the folder): [missing ...], [only a broken pytorch_model.bin],
  [no tokenizer files at all]
- missing sentencepiece.bpe.model: test_xlmr.py::test_missing_model_file; command line here
- truncated safetensors, header length beyond the file, header not JSON, a Git LFS pointer:
  [truncated model.safetensors], [header length beyond the file], [header not JSON],
  [Git LFS pointer]
- a tensor shape disagreeing with config.json:
  test_checkpoint.py::test_shape_disagreeing_with_config_is_named; [config.json disagrees ...]
- missing or unexpected tensors: test_checkpoint.py
- unknown model_type: test_xlmr.py::test_unsupported_architectures_are_clear_errors;
  [unknown model_type]
- corrupt SentencePiece model, or a Git LFS pointer: test_xlmr.py::test_corrupt_model_file;
  command line here
- missing MeCab dictionary: test_missing_mecab_dictionary_names_the_config (test_japanese.py
  checks the install hint); command line here
- invalid JSON in config.json, JSON of the wrong kind in any JSON file: [config.json ...],
  test_broken_json_file
- broken vocab.txt (LFS pointer, no [CLS], not UTF-8), broken tokenizer.json (LFS pointer,
  truncated, an unknown component), max_seq_length beyond the position
  table: [vocab.txt ...], [max_seq_length ...]

Command line: one line on stderr, exit status 1, no traceback
- every case of `minilm_cases`, and the sentencepiece.bpe.model and MeCab cases:
  test_cli_folder_errors
- undecodable input names the file and the byte position and suggests --encoding:
  test_cli.py::test_utf8_bom_and_other_encodings

Concurrency
- one model used from 4 threads gives the serial result: test_threads_share_one_model
- one tokenizer from 4 threads (the WordPiece cache, SentencePiece, the MeCab tagger):
  test_threads_share_one_tokenizer
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import corpus
import minisbert
import xlmr_folder
from minisbert import model as model_module
from minisbert.errors import (CheckpointError, ConfigError, MinisbertError, MissingDependencyError,
                              ModelFileMissing, TokenizerError, TruncationWarning,
                              UnsupportedModelError)
from minisbert.tokenizer import load_tokenizer
from minisbert.tokenizer.base import well_formed
from reference import compare, write_sentence_transformers_files

from cli_support import assert_one_line_error, run_cli


# ---------------------------------------------------------------------------- fixtures
# minilm (minisbert), minilm_reference (sentence-transformers), sp_model and ja_vocab come from
# conftest.py.

@pytest.fixture(scope="module")
def long_text() -> str:
    """A long English text: 2000 gettext messages in a row (~110k characters)."""
    return " ".join(corpus.english("ja")[:2000])


@pytest.fixture(scope="module")
def reference(minilm_reference):
    return minilm_reference


@pytest.fixture(scope="module")
def tiny_xlmr(tmp_path_factory, sp_model) -> Path:
    """A random XLM-R of width 32 (one layer), max_seq_length 64, as a sentence-transformers
    folder with a Normalize module, written with NumPy: the tests that use it compare it with
    nothing, so they need no torch."""
    pytest.importorskip("sentencepiece")
    return xlmr_folder.make_numpy_xlmr_folder(
        tmp_path_factory.mktemp("tiny_xlmr"), sp_model, hidden=32, layers=1, heads=2,
        intermediate=64, max_seq_length=64, normalize=True)


def linked_copy(src: Path, dst: Path, changes: dict[str, bytes | None]) -> Path:
    """A copy of model folder src in which each file is a symlink to the original, except that
    changes[name] replaces file `name` (bytes: new content; None: the file is absent)."""
    for f in sorted(src.rglob("*")):
        name = f.relative_to(src).as_posix()
        if f.is_file() and name not in changes:
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            (dst / name).symlink_to(f.resolve())
    for name, content in changes.items():
        if content is not None:  # written to a new file, never through a link to the original
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            (dst / name).write_bytes(content)
    return dst


def edited_json(src: Path, name: str, **edits) -> bytes:
    """src/name with keys changed (a value of None removes the key)."""
    data = json.loads((src / name).read_text())
    for key, value in edits.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data).encode()


def safetensors_prefix(path: Path, n_bytes: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n_bytes)


def minilm_cases(src: Path) -> dict[str, tuple[dict, type, str, tuple[str, ...]]]:
    """name -> (changes to the MiniLM folder, error type, file the message must name, what else
    it must say)."""
    weights = src / "model.safetensors"
    header_len = int.from_bytes(safetensors_prefix(weights, 8), "little")
    junk = b"\x00\xff not a JSON header"
    lfs = (b"version https://git-lfs.github.com/spec/v1\n"
           b"oid sha256:53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db\n"
           b"size 90868376\n")
    config = lambda **edits: {"config.json": edited_json(src, "config.json", **edits)}  # noqa: E731
    return {
        "missing config.json": (
            {"config.json": None}, ModelFileMissing, "config.json", ("no such file", "download")),
        "config.json not JSON": (
            {"config.json": b'{"model_type": "bert",'}, ConfigError, "config.json",
            ("not valid JSON", "download")),
        "config.json not an object": (
            {"config.json": b"[1, 2, 3]"}, ConfigError, "config.json", ("list", "download")),
        "config.json incomplete": (
            config(hidden_size=None), ConfigError, "config.json", ("'hidden_size'", "download")),
        "unknown model_type": (
            config(model_type="deberta-v2"), UnsupportedModelError, "config.json",
            ("'deberta-v2'", "bert, xlm-roberta, roberta, mpnet, distilbert")),
        "config.json disagrees with a tensor": (
            config(intermediate_size=1000), CheckpointError, "model.safetensors",
            ("encoder.layer.0.intermediate.dense.weight has shape [1536, 384]", "[1000, 384]")),
        "missing model.safetensors": (
            {"model.safetensors": None}, ModelFileMissing, "",
            ("holds no weights", "model.safetensors", "pytorch_model.bin", "Download")),
        "only a broken pytorch_model.bin": (
            {"model.safetensors": None, "pytorch_model.bin": b"PK\x03\x04"}, CheckpointError,
            "pytorch_model.bin", ("neither a zip archive", "download it again")),
        "truncated model.safetensors": (
            {"model.safetensors": safetensors_prefix(weights, 8 + header_len + 100_000)},
            CheckpointError, "model.safetensors", ("truncated", "download it again")),
        "header length beyond the file": (
            {"model.safetensors": (10**9).to_bytes(8, "little") + b'{"a": 1}'}, CheckpointError,
            "model.safetensors", ("1000000000 bytes", "download it again")),
        "header not JSON": (
            {"model.safetensors": len(junk).to_bytes(8, "little") + junk}, CheckpointError,
            "model.safetensors", ("not valid JSON", "download it again")),
        "Git LFS pointer": (
            {"model.safetensors": lfs}, CheckpointError, "model.safetensors",
            ("Git LFS pointer", "git lfs pull")),
        "missing vocab.txt": (
            {"vocab.txt": None, "tokenizer.json": None}, ModelFileMissing, "vocab.txt",
            ("no such file", "download")),
        "no tokenizer files at all": (
            {"vocab.txt": None, "tokenizer_config.json": None, "tokenizer.json": None},
            ModelFileMissing, "", ("none of tokenizer.json, vocab.txt", "sentencepiece.bpe.model",
                                   "merges.txt", "download")),
        "vocab.txt a Git LFS pointer": (
            {"vocab.txt": lfs, "tokenizer.json": None}, TokenizerError, "vocab.txt",
            ("Git LFS pointer", "git lfs pull")),
        "vocab.txt without [CLS]": (
            {"vocab.txt": (src / "vocab.txt").read_bytes().replace(b"[CLS]\n", b"[CLX]\n"),
             "tokenizer.json": None},
            TokenizerError, "vocab.txt", ("['[CLS]']", "download")),
        "vocab.txt not UTF-8": (
            {"vocab.txt": b"[PAD]\n\xff\xfe\n", "tokenizer.json": None}, TokenizerError, "vocab.txt",
            ("not UTF-8", "download")),
        "tokenizer.json a Git LFS pointer": (
            {"tokenizer.json": lfs}, TokenizerError, "tokenizer.json",
            ("Git LFS pointer", "git lfs pull")),
        "tokenizer.json truncated": (
            {"tokenizer.json": (src / "tokenizer.json").read_bytes()[:4000]}, TokenizerError,
            "tokenizer.json", ("not valid JSON", "download")),
        "tokenizer.json names an unknown component": (
            {"tokenizer.json": (src / "tokenizer.json").read_bytes().replace(
                b'"BertPreTokenizer"', b'"UnicodeScripts"')}, TokenizerError, "tokenizer.json",
            ("pre-tokenizer type 'UnicodeScripts'", "cannot run this tokenizer")),
        "max_seq_length beyond the position table": (
            {"sentence_bert_config.json": b'{"max_seq_length": 1000}'}, ConfigError,
            "sentence_bert_config.json", ("max_seq_length=1000", "512")),
    }


@pytest.fixture(scope="module")
def minilm_folders(minilm_path, tmp_path_factory):
    """name -> (broken copy of MiniLM, error type, file path the message names, fragments)."""
    root = tmp_path_factory.mktemp("broken_minilm")
    out = {}
    for i, (name, case) in enumerate(minilm_cases(minilm_path).items()):
        changes, error, file, fragments = case
        folder = linked_copy(minilm_path, root / f"case{i}", changes)
        out[name] = (folder, error, str(folder / file), fragments)
    return out


@pytest.fixture(scope="module")
def other_folders(tiny_xlmr, ja_vocab, tmp_path_factory):
    """The XLM-R and Japanese cases, same layout as minilm_folders."""
    root = tmp_path_factory.mktemp("broken_other")
    spm = "sentencepiece.bpe.model"
    xlmr_cases = {
        "missing sentencepiece.bpe.model": ({spm: None}, ModelFileMissing,
                                            ("no such file", "download")),
        "corrupt sentencepiece.bpe.model": ({spm: b"\x00garbage\xff" * 10}, TokenizerError,
                                            ("not a SentencePiece model", "download it again")),
        "sentencepiece.bpe.model a Git LFS pointer": (
            {spm: b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 5069051\n"},
            TokenizerError, ("Git LFS pointer", "git lfs pull")),
    }
    out = {}
    for i, (name, (changes, error, fragments)) in enumerate(xlmr_cases.items()):
        folder = linked_copy(tiny_xlmr, root / f"xlmr{i}", changes)
        out[name] = (folder, error, str(folder / spm), fragments)

    # A Japanese folder whose tokenizer asks for the full unidic dictionary; the command line
    # test makes sure it is not importable. The weights are never reached.
    from japanese_folder import write_tokenizer_files
    folder = root / "ja_unidic"
    write_tokenizer_files(folder, ja_vocab[:100], mecab_kwargs={"mecab_dic": "unidic"})
    (folder / "config.json").write_text(json.dumps({
        "model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 16, "vocab_size": 100, "max_position_embeddings": 512}))
    write_sentence_transformers_files(folder, dim=8, max_seq_length=80)
    out["missing MeCab dictionary"] = (folder, MissingDependencyError,
                                       str(folder / "tokenizer_config.json"),
                                       ("pip install unidic",))
    return out


# ---------------------------------------------------------------------------- texts

def test_empty_input(minilm):
    for empty in ([], (), iter([])):
        out = minilm.encode(empty)
        assert out.shape == (0, 384) and out.dtype == np.float32


def test_non_string_item_names_its_index(minilm):
    with pytest.raises(TypeError, match=r"texts\[2\] is bytes, not str"):
        minilm.encode(["one", "two", b"three"])
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType, not str"):
        minilm.encode(x for x in ["one", None])


ODD_TEXTS = {
    "empty": "",
    "spaces": "   ",
    "white space mix": " \t\n\r\u3000\u00a0\u2028 ",
    "NUL inside": "nul\x00byte in the middle",
    "NUL only": "\x00",
    "U+FFFD": "caf\ufffd au lait \ufffd",
    "U+FFFD only": "\ufffd",
    "lone high surrogate": "\ud800",
    "lone low surrogate in a word": "sur\udc80rogate text",
    "surrogate pair as two code points": "smile \ud83d\ude00 please",
    "Arabic": "مرحبا بالعالم، كيف حالك؟",
    "Hebrew with bidi embedding": "\u202bשלום עולם\u202c and English",
    "bidi isolate and marks": "\u2067abc\u2069 \u200fright\u200e",
    "combining marks": "e\u0301te\u0301 Z\u0351\u0352a\u0353l\u0354g\u0355o \u0915\u094d\u0937",
    "emoji joiners": "👩\u200d👩\u200d👧\u200d👦 family, 👩🏾\u200d💻 coder, 🏳️\u200d🌈 flag, 1️⃣",
}


def test_odd_texts_match_sentence_transformers(minilm, reference, long_text):
    """Ids and embeddings of odd texts against sentence-transformers (surrogates: against its
    result for the repaired text, see test_surrogates_are_rejected_by_the_reference)."""
    names, texts = [*ODD_TEXTS, "long"], [*ODD_TEXTS.values(), long_text[:5000]]
    repaired = [well_formed(t) for t in texts]
    ref_ids = reference.tokenizer([t.strip() for t in repaired], truncation=True,
                                  max_length=256)["input_ids"]
    for name, text, want in zip(names, texts, ref_ids):
        assert minilm.tokenizer.encode(text.strip()) == want, name
        if name in ("empty", "spaces", "white space mix", "NUL only", "U+FFFD only",
                    "lone high surrogate"):
            assert want == [101, 102], name  # [CLS] [SEP]: nothing else survives cleaning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)  # the long text; tested below
        ours = minilm.encode(texts)
    maxdiff, mincos = compare("odd texts vs sentence-transformers", ours,
                              reference.encode(repaired))
    assert maxdiff <= 1e-5 and mincos >= 1 - 1e-6


def test_surrogates_are_rejected_by_the_reference(reference, xlmr_reference):
    """Why surrogates are compared through `well_formed`: the references have no ids for them
    (and minisbert's front ends accept them: test_properties.py)."""
    for tokenizer in (reference.tokenizer, xlmr_reference):
        for text in ("\ud800", "a\udc80b", "\ud83d\ude00"):
            with pytest.raises(TypeError):  # the day this passes, compare such text directly
                tokenizer(text)


def test_truncation_warns_once_per_process(minilm, reference, long_text, monkeypatch):
    monkeypatch.setattr(model_module, "_truncation_reported", False)  # as in a fresh process
    texts = [long_text[:3000], "short", long_text[3000:5000]]
    full = [len(ids) for ids in reference.tokenizer(texts)["input_ids"]]  # not truncated
    cut = [max(n - 256, 0) for n in full]
    print(f"\ntokens (special ones included): {full}, max_seq_length 256, cut: {cut}")
    assert cut[0] > cut[2] > 0 == cut[1]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # so only minisbert's own once-per-process rule counts
        minilm.encode(texts)
        minilm.encode([long_text[5000:9000], long_text])  # more long texts: no second warning
        minilm.encode(long_text[:3000])
    ours = [w for w in caught if issubclass(w.category, TruncationWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    message = str(ours[0].message)
    print(f"warning: {message}")
    assert ours[0].filename == __file__  # points at the caller's line
    for fragment in ("2 text(s)", "max_seq_length=256", f"last {sum(cut)} tokens",
                     f"texts[0] lost the most: {cut[0]} tokens", "once per process"):
        assert fragment in message, fragment


def test_cli_truncation_warning_is_one_line(minilm_path, tmp_path, long_text):
    path = tmp_path / "long.txt"
    path.write_text(f"{long_text[:3000]}\nA short line.\n{long_text[3000:6000]}\n", encoding="utf-8")
    proc = run_cli("search", "-i", path, "--model", minilm_path, "-p", long_text[6000:9000], "-k", "3")
    print(f"\nstderr: {proc.stderr}")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3
    assert re.fullmatch(r"minisbert: warning: 2 text\(s\) are longer than max_seq_length=256 "
                        r"tokens, .*once per process\.\n", proc.stderr)


# Encode n long texts, made one at a time by a generator, under tracemalloc. Run in a fresh
# process with one BLAS thread, so nothing else allocates.
_MEMORY = """
import json, sys, tracemalloc, warnings
import minisbert
folder, long_path = sys.argv[1:]
long = open(long_path, encoding="utf-8").read()
model = minisbert.load(folder)
warnings.simplefilter("ignore")

def texts(n, chars=2000):
    for i in range(n):
        start = (i * 37) % (len(long) - chars)
        yield long[start:start + chars]

tracemalloc.start()
peaks = {}
for n in (500, 5000):
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    out = model.encode(texts(n))
    peaks[n] = tracemalloc.get_traced_memory()[1] - before
    assert out.shape == (n, model.dim)
    del out
print(json.dumps(peaks))
"""


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_memory_does_not_grow_with_the_input(tiny_xlmr, tmp_path, long_text):
    """5000 texts of 2000 characters cost, beyond 500 such texts, no more than their output rows
    and their ids (max_seq_length int32 each) plus ~200 bytes of bookkeeping per text: an array
    header, a list slot, the sort order. Holding the texts would add 2000 bytes per text."""
    (tmp_path / "long.txt").write_text(long_text, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-c", _MEMORY, str(tiny_xlmr), str(tmp_path / "long.txt")],
        capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    peaks = {int(n): v for n, v in json.loads(run.stdout).items()}
    per_text = (peaks[5000] - peaks[500]) / 4500
    row, ids = 32 * 4, 64 * 4  # one output row (dim 32) and one text's ids (max_seq_length 64)
    print(f"\npeak traced memory while encoding: 500 texts {peaks[500] / 2**20:.2f} MiB, "
          f"5000 texts {peaks[5000] / 2**20:.2f} MiB; {per_text:.0f} bytes per extra text "
          f"(output row {row}, ids {ids}, bound {row + ids + 200}; the text itself: 2049)")
    assert per_text <= row + ids + 200


# ---------------------------------------------------------------------------- model folders

def test_folder_error(minilm_folders, tmp_path):
    """Each broken MiniLM copy: one exception of the stated type, whose message names the file
    and what to do. (The same folders through the command line: test_cli_folder_errors.)"""
    cases = dict(minilm_folders)
    missing = tmp_path / "no-such-model"
    cases["no such folder"] = (missing, ModelFileMissing, str(missing), ("no such model folder",))
    for name, (folder, error, file, fragments) in cases.items():
        with pytest.raises(error) as e:
            minisbert.load(folder)
        message = str(e.value)
        print(f"\n{name}: {type(e.value).__name__}: {message}")
        assert isinstance(e.value, MinisbertError)
        for fragment in (file, *fragments):
            assert fragment in message, (name, fragment)


JSON_FILES = ["modules.json", "1_Pooling/config.json", "config.json", "sentence_bert_config.json",
              "tokenizer_config.json", "special_tokens_map.json"]


@pytest.mark.parametrize("content", [b'{"unterminated": ', b"\xff\xfe{}", b"null", b'"text"', b"[]",
                                     b"{}"])
@pytest.mark.parametrize("name", JSON_FILES)
def test_broken_json_file(minilm_path, tmp_path, name, content):
    """Every JSON file of the folder, unreadable or of the wrong kind: a MinisbertError naming
    it, or (for an empty object where every setting is optional) the model loads."""
    folder = linked_copy(minilm_path, tmp_path / "model", {name: content})
    try:
        minisbert.load(folder)
    except MinisbertError as e:
        assert str(folder / name) in str(e), str(e)
    else:
        optional = name not in ("modules.json", "config.json", "1_Pooling/config.json")
        assert content == b"{}" and optional, f"{name} = {content!r} was accepted"


def test_missing_mecab_dictionary_names_the_config(other_folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "unidic", None)  # `import unidic` fails, installed or not
    folder, error, file, fragments = other_folders["missing MeCab dictionary"]
    with pytest.raises(error, match=re.escape(file) + ".*" + fragments[0]):
        minisbert.load(folder)


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_cli_folder_errors(minilm_folders, other_folders, tmp_path):
    """Every folder case through `python -m minisbert search`: one line on stderr naming the
    file, exit status 1, no traceback."""
    texts = tmp_path / "texts.txt"
    texts.write_text("The first text.\nThe second text.\n")
    # A package named unidic whose import fails: the dictionary is "not installed" for the
    # command below, whether or not the real one is.
    (tmp_path / "shadow" / "unidic").mkdir(parents=True)
    (tmp_path / "shadow" / "unidic" / "__init__.py").write_text(
        "raise ImportError('unidic is not installed (simulated)')\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "shadow"),
                                                        os.environ.get("PYTHONPATH")]))}
    for name, (folder, error, file, fragments) in {**minilm_folders, **other_folders}.items():
        print(f"\n{name}:", end="")
        proc = run_cli("search", "-i", texts, "--model", folder, "-p", "q", env=env)
        assert_one_line_error(proc, file, *fragments)


# ---------------------------------------------------------------------------- threads

def _in_threads(fn, chunks, n_threads=4):
    """fn over each chunk, in n_threads threads at once, with the GIL handed over as often as
    possible so that the threads interleave inside tokenizers and the encoder."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with ThreadPoolExecutor(n_threads) as pool:
            return list(pool.map(fn, chunks))
    finally:
        sys.setswitchinterval(interval)


def test_threads_share_one_model(minilm):
    texts = corpus.spread(corpus.english("ja"), 240)
    chunks = [texts[i::4] for i in range(4)]  # 4 different lists, long and short texts mixed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        serial = [minilm.encode(chunk) for chunk in chunks]
        threaded = _in_threads(minilm.encode, chunks)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(serial, threaded))
    print(f"\n4 threads x 60 texts vs serial: maxdiff = {diff:.2e}")
    assert diff <= 1e-6


@pytest.mark.parametrize("front_end", ["wordpiece", "sentencepiece", "mecab"])
def test_threads_share_one_tokenizer(front_end, minilm_path, tiny_xlmr, ja_vocab, tmp_path):
    if front_end == "wordpiece":  # a fresh tokenizer: its WordPiece cache fills in the threads
        tok, texts = load_tokenizer(minilm_path, 256), corpus.english("ja")[:8000]
    elif front_end == "sentencepiece":
        tok, texts = load_tokenizer(tiny_xlmr, 64), corpus.translations("ru")[:8000]
    else:
        pytest.importorskip("fugashi")
        from japanese_folder import write_tokenizer_files
        write_tokenizer_files(tmp_path, ja_vocab)
        tok, texts = load_tokenizer(tmp_path, 512), corpus.translations("ja")[:8000]
    chunks = [texts[i::4] for i in range(4)]
    threaded = _in_threads(lambda chunk: [tok.encode(t) for t in chunk], chunks)
    serial = [[tok.encode(t) for t in chunk] for chunk in chunks]
    assert threaded == serial
