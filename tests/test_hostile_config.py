"""Model folders built by an attacker, other than pytorch_model.bin's pickle (see
test_hostile_files.py): safetensors headers, config.json values, tokenizer files and
config_sentence_transformers.json. Each is refused with a MinisbertError naming the file
(so the command line prints one `minisbert: error:` line), within seconds and megabytes; a
file that is strange but valid (tensors that are all empty) loads.

The folders are tiny BERT and DistilBERT models written here by hand (NumPy only, no
reference library needed). Hostile values that would allocate gigabytes are loaded in a child
process limited in time and address space, so a loader that tries fails the test instead of
the machine. A fuzz test feeds the safetensors reader random headers."""

from __future__ import annotations

import json
import math
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import minisbert
from minisbert import weights
from minisbert.checkpoint import expected_shapes
from minisbert.errors import (CheckpointError, ConfigError, MinisbertError, TokenizerError)
from minisbert.families import encoder_config
from minisbert.folder import read_modules

from cli_support import assert_one_line_error, run_cli
from test_hostile_files import _bounded, _run_in_child

ROOT = Path(minisbert.__file__).resolve().parents[1]  # the minisbert under test
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat"]
BERT = {"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 16, "vocab_size": len(VOCAB),
        "max_position_embeddings": 16, "type_vocab_size": 2}
DISTILBERT = {"model_type": "distilbert", "dim": 8, "n_layers": 1, "n_heads": 2,
              "hidden_dim": 16, "vocab_size": len(VOCAB), "max_position_embeddings": 16,
              "sinusoidal_pos_embds": True}


# ---------------------------------------------------------------------------- folders

def _safetensors(path: Path, header, data: bytes = b"") -> Path:
    """A .safetensors file with the given header (an object, or the raw JSON bytes)."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _write_tensors(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    header, data = {}, b""
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return _safetensors(path, header, data)


def _folder(root: Path, config: dict = BERT, *, weights_config: dict | None = None,
            files: dict[str, str] | None = None) -> Path:
    """A tiny model folder whose weights fit `weights_config` (default: `config`); config.json
    is `config`. `files` are written last (file name -> text), over the defaults."""
    root.mkdir(parents=True, exist_ok=True)
    shapes = expected_shapes(encoder_config(weights_config or config, root / "config.json"))
    if (weights_config or config).get("sinusoidal_pos_embds"):
        shapes.pop("embeddings.position_embeddings.weight")  # computed by the loader
    rng = np.random.default_rng(0)
    _write_tensors(root / "model.safetensors",
                   {n: rng.standard_normal(s).astype(np.float32) * 0.1 for n, s in shapes.items()})
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (root / "config.json").write_text(json.dumps(config))
    (root / "modules.json").write_text(json.dumps(
        [{"type": "sentence_transformers.models.Transformer", "path": ""}]))  # mean pooling
    (root / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "DistilBertTokenizer" if config["model_type"] == "distilbert"
        else "BertTokenizer", "do_lower_case": True}))
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    return root


def _load(folder: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no modules.json: the plain-folder warning
        return minisbert.load(folder)


def test_the_tiny_folders_load_and_encode(tmp_path):
    """The control for every test below: the folders as written are valid models."""
    for name, config in (("bert", BERT), ("distilbert", DISTILBERT)):
        vectors = _load(_folder(tmp_path / name, config)).encode(["the cat sat"])
        assert vectors.shape == (1, 8) and np.isfinite(vectors).all()


_CHILD = """
import json, resource, sys, time, tracemalloc, warnings
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
import minisbert
from minisbert.errors import MinisbertError
tracemalloc.start()
start = time.monotonic()
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minisbert.load(sys.argv[1])
    outcome = {{"error": None}}
except BaseException as e:
    outcome = {{"error": type(e).__name__, "ours": isinstance(e, MinisbertError),
               "message": str(e)[:2000]}}
outcome["seconds"] = time.monotonic() - start
outcome["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
print(json.dumps(outcome))
"""


def _load_in_child(folder: Path, seconds: float = 60, address_space_gb: float = 3) -> dict:
    """minisbert.load(folder) in a child limited in time and address space: what happened."""
    code = _CHILD.format(limit=int(address_space_gb * 2**30))
    outcome = _run_in_child(code, folder, seconds, root=ROOT)
    print(f"\n{folder.name}: {outcome}")
    return outcome


# ---------------------------------------------------------------------------- config.json

def test_ten_million_layers_are_refused_before_their_shapes_are_listed(tmp_path):
    folder = _folder(tmp_path / "layers", {**BERT, "num_hidden_layers": 10**7},
                     weights_config=BERT)
    outcome = _load_in_child(folder)
    assert outcome["error"] == "CheckpointError", outcome
    assert "num_hidden_layers 10000000; the weights hold 1 layer(s)" in outcome["message"]
    assert outcome["peak_mb"] < 64 and outcome["seconds"] < 10


@pytest.mark.parametrize("change", [
    {"max_position_embeddings": 40_000, "dim": 10_000},  # wider than the weights: 11.9 GiB
    {"max_position_embeddings": 10**7},  # as wide as the weights, 10 million rows
])
def test_a_sinusoidal_table_is_bounded(tmp_path, change):
    folder = _folder(tmp_path / "sinusoidal", {**DISTILBERT, **change},
                     weights_config=DISTILBERT)
    outcome = _load_in_child(folder)
    assert outcome["error"] == "CheckpointError", outcome
    assert "model.safetensors" in outcome["message"]
    assert outcome["peak_mb"] < 64 and outcome["seconds"] < 10


def test_a_long_sinusoidal_table_within_the_bound_is_made(tmp_path):
    """8,192 positions (beyond the 1,024-row blocks it is built in) are the formula's."""
    from minisbert.checkpoint import sinusoidal_positions
    table = sinusoidal_positions(8192, 8)
    p, j = np.arange(8192)[:, None], np.arange(8)[None, :]
    angle = p / np.power(10000, 2 * (j // 2) / 8)
    want = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    print(f"\nmax abs diff {np.abs(table - want).max():.2e}")
    np.testing.assert_allclose(table, want, atol=1e-6)
    folder = _folder(tmp_path / "long", {**DISTILBERT, "max_position_embeddings": 8192},
                     weights_config=DISTILBERT)
    assert _load(folder).params["embeddings"]["position"].shape == (8192, 8)


@pytest.mark.parametrize("eps", ["NaN", "Infinity", "-Infinity", "1e309", "-1e-12"])
def test_layer_norm_eps_must_be_finite_and_not_negative(tmp_path, eps):
    folder = _folder(tmp_path / "eps", BERT)
    text = json.dumps(BERT)[:-1] + f', "layer_norm_eps": {eps}}}'  # as an attacker writes it
    (folder / "config.json").write_text(text)
    with pytest.raises(ConfigError, match="layer_norm_eps") as e:
        _load(folder)
    print(f"\n{eps}: {e.value}")
    assert str(folder / "config.json") in str(e.value)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"hidden_size": ' + "9" * 5000 + "}"])
def test_config_json_deeply_nested_or_with_a_5000_digit_number(tmp_path, text):
    folder = _folder(tmp_path / "json", BERT)
    (folder / "config.json").write_text(text)
    with pytest.raises(ConfigError, match="not valid JSON") as e:
        _load(folder)
    print(f"\n{str(e.value)[:300]}")
    assert str(folder / "config.json") in str(e.value) and len(str(e.value)) < 1000


# ---------------------------------------------------------------------------- token ids

def _tokenizer_json(added: list[dict]) -> str:
    return json.dumps({
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": {t: i for i, t in enumerate(VOCAB)}},
        "normalizer": {"type": "BertNormalizer", "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "cls": ["[CLS]", 2], "sep": ["[SEP]", 3]},
        "added_tokens": added})


def test_tokenizer_json_control(tmp_path):
    """The tokenizer.json below, with sound ids, loads and puts the added token's id."""
    added = [{"id": 4, "content": "[MASK]", "special": True}]
    folder = _folder(tmp_path / "ok", files={"tokenizer.json": _tokenizer_json(added)})
    assert _load(folder).tokenize(["the [MASK] sat"]) == [[2, 5, 4, 7, 3]]


@pytest.mark.parametrize("token_id", [-1, len(VOCAB), 10**30])
def test_an_added_token_id_outside_the_embedding_rows(tmp_path, token_id):
    """Id -1 would read the embedding table's last row, as NumPy indexes from the end."""
    added = [{"id": token_id, "content": "[X]", "special": True}]
    folder = _folder(tmp_path / "added", files={"tokenizer.json": _tokenizer_json(added)})
    with pytest.raises(TokenizerError, match=r"'\[X\]' the id") as e:
        _load(folder)
    print(f"\n{e.value}")
    assert str(folder) in str(e.value)


def test_a_vocab_txt_longer_than_the_embedding_table(tmp_path):
    """The old WordPiece front end: a ninth line has id 8, past the table's 8 rows."""
    folder = _folder(tmp_path / "vocab", files={"vocab.txt": "\n".join(VOCAB + ["dog"])})
    with pytest.raises(TokenizerError, match=r"'dog' the id 8.*rows 0 to 7"):
        _load(folder)


def test_a_bpe_vocab_json_with_a_negative_id(tmp_path):
    """The old byte-level BPE front end (vocab.json + merges.txt)."""
    vocab = {s: i for i, s in enumerate(["<s>", "<pad>", "</s>", "<unk>"])}
    vocab.update({chr(c): 4 + i for i, c in enumerate(range(ord("a"), ord("z") + 1))})
    vocab["z"] = -1
    folder = _folder(tmp_path / "bpe", {**BERT, "model_type": "roberta", "pad_token_id": 1,
                                        "vocab_size": 30, "max_position_embeddings": 18,
                                        "type_vocab_size": 1},
                     files={"vocab.json": json.dumps(vocab), "merges.txt": "#version: 0.2\n",
                            "tokenizer_config.json": '{"tokenizer_class": "RobertaTokenizer"}'})
    with pytest.raises(TokenizerError, match=r"'z' the id -1"):
        _load(folder)


# ---------------------------------------------------------------------------- tokenizer files

@pytest.mark.parametrize("file, key, value", [
    ("tokenizer_config.json", "tokenizer_class", 5),
    ("tokenizer_config.json", "cls_token", ["x"]),
    ("tokenizer_config.json", "cls_token", {"content": 5}),
    ("tokenizer_config.json", "model_max_length", "abc"),
    ("tokenizer_config.json", "model_max_length", True),
    ("tokenizer_config.json", "added_tokens_decoder", {"0": "x"}),
    ("special_tokens_map.json", "sep_token", 7),
])
def test_tokenizer_config_values_of_the_wrong_type(tmp_path, file, key, value):
    folder = _folder(tmp_path / "tok")
    config = json.loads((folder / file).read_text()) if (folder / file).exists() else {}
    (folder / file).write_text(json.dumps({**config, key: value}))
    with pytest.raises(TokenizerError, match=key) as e:
        _load(folder)
    print(f"\n{e.value}")
    assert str(folder / file) in str(e.value)


@pytest.mark.parametrize("default", [5, [], {}, ["query"]])
def test_default_prompt_name_that_is_not_a_string(tmp_path, default):
    folder = _folder(tmp_path / "prompt", files={"config_sentence_transformers.json": json.dumps(
        {"prompts": {"query": "query: "}, "default_prompt_name": default})})
    with pytest.raises(ConfigError, match="default_prompt_name") as e:
        _load(folder)
    assert "config_sentence_transformers.json" in str(e.value)


def test_read_modules_is_linear_in_the_module_count(tmp_path):
    """20,000 Dense entries: reading modules.json must not compare each with every other."""
    folder = tmp_path / "many"
    folder.mkdir()
    entries = [{"type": "sentence_transformers.models.Transformer", "path": ""}] + [
        {"type": "sentence_transformers.models.Dense", "path": f"{i}_Dense"}
        for i in range(20_000)]
    (folder / "modules.json").write_text(json.dumps(entries))
    start = time.monotonic()
    modules = read_modules(folder).modules
    elapsed = time.monotonic() - start
    print(f"\n20,001 modules read in {elapsed:.2f} s")
    assert len(modules) == 20_001 and elapsed < 1.0


# ---------------------------------------------------------------------------- safetensors

HOSTILE_HEADERS = {
    "shape overflowing int64": {"w": {"dtype": "F32", "shape": [2**32, 2**32],
                                      "data_offsets": [0, 0]}},
    "shape 10**400": {"w": {"dtype": "F32", "shape": [10**400], "data_offsets": [0, 4]}},
    "shape a string": {"w": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}},
    "shape an object": {"w": {"dtype": "F32", "shape": {"a": 4}, "data_offsets": [0, 16]}},
    "shape of booleans": {"w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}},
    "shape negative": {"w": {"dtype": "F32", "shape": [-1, -4], "data_offsets": [0, 16]}},
    "1000 dimensions": {"w": {"dtype": "F32", "shape": [1] * 1000, "data_offsets": [0, 4]}},
    "entry a list": {"w": [1, 2, 3]},
    "entry without shape": {"w": {"dtype": "F32", "data_offsets": [0, 4]}},
    "offsets backwards": {"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}},
    "offsets past the data": {"w": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}},
    "offsets three numbers": {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8, 16]}},
    "dtype a list": {"w": {"dtype": ["F32"], "shape": [4], "data_offsets": [0, 16]}},
    "dtype F8": {"w": {"dtype": "F8_E4M3", "shape": [16], "data_offsets": [0, 16]}},
    "a long name": {"x" * 100_000: {"dtype": "F32", "shape": [5], "data_offsets": [0, 16]}},
}
HOSTILE_RAW_HEADERS = {
    "nested 100,000 deep": b'{"w": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "a 5,000-digit number": b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000
                            + b'], "data_offsets": [0, 16]}}',
    "not an object": b"[1, 2, 3]",
    "not UTF-8": b'{"w\xff": 1}',
}


@pytest.mark.parametrize("case", [*HOSTILE_HEADERS, *HOSTILE_RAW_HEADERS])
def test_hostile_safetensors_header_is_a_checkpoint_error(tmp_path, case):
    header = HOSTILE_HEADERS.get(case) or HOSTILE_RAW_HEADERS[case]
    path = _safetensors(tmp_path / "model.safetensors", header, bytes(16))
    with _bounded(seconds=2, megabytes=64):
        with pytest.raises(CheckpointError) as e:
            weights.read_safetensors(path)
    print(f"\n{case}: {str(e.value)[:400]}")
    assert str(path) in str(e.value) and len(str(e.value)) < 1000


def test_header_length_beyond_the_bound(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(CheckpointError, match="header"):
        weights.read_safetensors(path)


def test_a_file_whose_tensors_are_all_empty_loads(tmp_path):
    """Valid safetensors: no data at all, every tensor of 0 elements."""
    path = _safetensors(tmp_path / "model.safetensors", {
        "a": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]},
        "b": {"dtype": "F16", "shape": [0], "data_offsets": [0, 0]},
        "c": {"dtype": "I64", "shape": [3, 0, 2], "data_offsets": [0, 0]},
        "__metadata__": {"format": "pt"}})
    got = weights.read_safetensors(path)
    assert {k: (v.shape, v.dtype) for k, v in got.items()} == {
        "a": ((0, 4), np.float32), "b": ((0,), np.float32), "c": ((3, 0, 2), np.int64)}


def test_an_empty_tensor_beside_real_ones(tmp_path):
    data = np.arange(4, dtype="<f4").tobytes()
    path = _safetensors(tmp_path / "model.safetensors", {
        "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "e": {"dtype": "F32", "shape": [0], "data_offsets": [16, 16]}}, data)
    got = weights.read_safetensors(path)
    np.testing.assert_array_equal(got["w"], [[0, 1], [2, 3]])
    assert got["e"].shape == (0,)


# ---------------------------------------------------------------------------- the command line

@pytest.mark.parametrize("case", ["safetensors shape", "tokenizer_class 5", "eps NaN"])
def test_the_command_line_prints_one_error_line(tmp_path, case):
    folder = _folder(tmp_path / "model")
    if case == "safetensors shape":
        _safetensors(folder / "model.safetensors", HOSTILE_HEADERS["shape overflowing int64"])
        want = "model.safetensors"
    elif case == "tokenizer_class 5":
        (folder / "tokenizer_config.json").write_text('{"tokenizer_class": 5}')
        want = "tokenizer_config.json"
    else:
        (folder / "config.json").write_text(json.dumps(BERT)[:-1] + ', "layer_norm_eps": NaN}')
        want = "config.json"
    texts = tmp_path / "texts.txt"
    texts.write_text("the cat\n")
    proc = run_cli("encode", "-i", texts, "-o", tmp_path / "index", "--model", folder)
    print(f"\n{case}: {proc.stderr.strip()}")
    assert_one_line_error(proc, want)


# ---------------------------------------------------------------------------- fuzzing

_DTYPE_NAMES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I8", "U8", "BOOL", "F8_E4M3", ""]
_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
          "I8": "i1", "U8": "u1", "BOOL": "?"}


def _expected(header: dict, data: bytes) -> dict:
    """The tensors a correct reader gives for a header it accepts: each entry's bytes of the
    data section, decoded by its dtype, float types as float32 (bfloat16 by hand)."""
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = np.frombuffer(data[begin:end], dtype=_NUMPY[info["dtype"]])
        if info["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in ("F16", "F64"):
            raw = raw.astype(np.float32)
        out[name] = raw.reshape(info["shape"])
    return out


def _headers(st):
    number = st.one_of(st.integers(0, 8), st.integers(-3, 3), st.sampled_from(
        [2**32, 2**63, 2**64 + 1, 10**400, True, 0.5, None, "4"]))
    shape = st.one_of(st.lists(st.integers(0, 4), max_size=3), st.lists(number, max_size=4),
                      number, st.dictionaries(st.text(max_size=2), number, max_size=2))
    offsets = st.one_of(st.tuples(st.integers(0, 40), st.integers(0, 40)).map(sorted),
                        st.lists(number, max_size=3))
    sizes = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1,
             "BOOL": 1}
    consistent = st.builds(  # offsets that fit the shape: these load when the data is there
        lambda dtype, dims, begin: {"dtype": dtype, "shape": dims, "data_offsets": [
            begin, begin + math.prod(dims) * sizes[dtype]]},
        st.sampled_from(sorted(sizes)), st.lists(st.integers(0, 3), max_size=3),
        st.integers(0, 8))
    entry = st.one_of(
        consistent, consistent,
        st.fixed_dictionaries({"dtype": st.sampled_from(_DTYPE_NAMES), "shape": shape,
                               "data_offsets": offsets}),
        st.fixed_dictionaries({"dtype": st.sampled_from(_DTYPE_NAMES), "shape": shape}),
        number, st.lists(number, max_size=3))
    return st.dictionaries(st.sampled_from(["a", "b", "c", "__metadata__", ""]), entry,
                           max_size=4)


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_fuzz_safetensors_headers(tmp_path):
    """Random headers over random data: always a CheckpointError naming the file or the
    tensors the header describes, each within 2 s and 64 MB; never another exception."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    path = tmp_path / "fuzz.safetensors"
    outcomes = {"loaded": 0, "refused": 0}

    @hypothesis.settings(max_examples=400, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(_headers(st), st.binary(max_size=40), st.booleans())
    def run(header, data, raw_json):
        # Sometimes the JSON text is cut or has a byte changed: not JSON, or other JSON.
        text = json.dumps(header).encode()
        if raw_json and text:
            text = text[:len(data) % len(text) + 1]
        _safetensors(path, text, data)
        try:
            with _bounded(seconds=2, megabytes=64):
                got = weights.read_safetensors(path)
        except MinisbertError as e:
            assert str(path) in str(e) and len(str(e)) < 1000, str(e)[:2000]
            outcomes["refused"] += 1
            return
        want = _expected(json.loads(text), data)
        assert list(got) == list(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
        outcomes["loaded"] += 1

    start = time.monotonic()
    run()
    print(f"\n{outcomes} in {time.monotonic() - start:.1f} s")
    assert outcomes["loaded"] and outcomes["refused"]
