"""Reading a model folder without running it: modules.json -> the pipeline, JSON settings,
config.json's types, the safetensors header. NumPy and JSON only; the two tests that load a
real model need just the all-MiniLM-L6-v2 package (no torch).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import minisbert
from minisbert.weights import read_safetensors_header
from minisbert.errors import (ConfigError, DownloadError, MinisbertError, ModelFileMissing,
                              UnsupportedModelError)
from minisbert.folder import Module, parse_modules, read_json, read_modules
from minisbert.families import encoder_config

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"
LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 612\n"


def write_modules(folder: Path, *modules: tuple[str, str]) -> Path:
    """folder/modules.json listing (type, path) pairs, as sentence-transformers writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = [{"idx": i, "name": str(i), "path": path, "type": type_}
               for i, (type_, path) in enumerate(modules)]
    (folder / "modules.json").write_text(json.dumps(entries, indent=2))
    return folder


# ---------------------------------------------------------------------------- modules.json

def test_usual_pipeline_in_order(tmp_path):
    folder = write_modules(tmp_path, (TRANSFORMER, ""), (POOLING, "1_Pooling"),
                           (NORMALIZE, "2_Normalize"))
    pipeline = read_modules(folder)
    assert [m.kind for m in pipeline.modules] == ["Transformer", "Pooling", "Normalize"]
    assert pipeline.modules[1] == Module("Pooling", POOLING, "1_Pooling")
    assert pipeline.modules_json == folder / "modules.json"
    assert pipeline.transformer_dir == folder
    assert pipeline.pooling_config == folder / "1_Pooling" / "config.json"
    assert pipeline.normalize


def test_transformer_in_a_subfolder(tmp_path):
    """Old sentence-transformers folders keep the transformer in 0_BERT; "./" and a trailing
    "/" name the same folders."""
    folder = write_modules(tmp_path, (TRANSFORMER, "./0_BERT/"), (POOLING, "1_Pooling/"))
    pipeline = read_modules(folder)
    assert [m.path for m in pipeline.modules] == ["0_BERT", "1_Pooling"]
    assert pipeline.transformer_dir == folder / "0_BERT"
    assert pipeline.pooling_config == folder / "1_Pooling" / "config.json"
    assert not pipeline.normalize


def test_missing_modules_json_is_a_plain_folder(tmp_path):
    pipeline = read_modules(tmp_path)
    assert pipeline.modules_json is None
    assert [m.kind for m in pipeline.modules] == ["Transformer"]
    assert pipeline.transformer_dir == tmp_path
    assert pipeline.pooling_config is None and not pipeline.normalize


def test_missing_folder(tmp_path):
    with pytest.raises(ModelFileMissing, match="no such model folder"):
        read_modules(tmp_path / "nowhere")


@pytest.mark.parametrize("path", ["../elsewhere", "1_Pooling/../../up", "/etc", "\\\\server\\share",
                                  "C:\\models", "..\\up"])
def test_module_path_outside_the_folder_is_refused(tmp_path, path):
    folder = write_modules(tmp_path, (TRANSFORMER, ""), (POOLING, path))
    with pytest.raises(ConfigError, match="outside the model folder") as e:
        read_modules(folder)
    print(f"\n{e.value}")
    assert str(folder / "modules.json") in str(e.value) and repr(path) in str(e.value)
    # The downloader parses the same list and reports it as a download failure.
    data = json.loads((folder / "modules.json").read_text())
    with pytest.raises(DownloadError, match="outside the model folder"):
        parse_modules(data, folder / "modules.json", error=DownloadError)


def test_unknown_module_type_names_what_runs(tmp_path):
    lstm = "sentence_transformers.models.LSTM"
    folder = write_modules(tmp_path, (TRANSFORMER, ""), (lstm, "1_LSTM"), (POOLING, "2_Pooling"))
    with pytest.raises(UnsupportedModelError) as e:
        read_modules(folder)
    message = str(e.value)
    print(f"\n{message}")
    for fragment in (str(folder / "modules.json"), lstm, "Transformer", "Pooling", "Dense",
                     "Normalize"):
        assert fragment in message, fragment
    # Parsing alone keeps unknown kinds, in order (the downloader fetches what is listed).
    parsed = parse_modules(json.loads((folder / "modules.json").read_text()), folder)
    assert [m.kind for m in parsed] == ["Transformer", "LSTM", "Pooling"]


@pytest.mark.parametrize("modules, fragment", [
    ([], "no Transformer"),
    ([(POOLING, "1_Pooling")], "no Transformer"),
    ([(TRANSFORMER, ""), (TRANSFORMER, "0_BERT")], "Transformer appear more than once"),
    ([(TRANSFORMER, ""), (POOLING, "1_Pooling"), (POOLING, "2_Pooling")], "Pooling appear more"),
])
def test_pipelines_minisbert_cannot_run(tmp_path, modules, fragment):
    folder = write_modules(tmp_path, *modules)
    with pytest.raises(UnsupportedModelError, match=fragment):
        read_modules(folder)


@pytest.mark.parametrize("entry", [1, "Transformer", {"path": ""}, {"type": 3, "path": ""},
                                   {"type": TRANSFORMER, "path": None}])
def test_malformed_entry(tmp_path, entry):
    (tmp_path / "modules.json").write_text(json.dumps([entry]))
    with pytest.raises(ConfigError, match=r"entry 0 is .*not an object with a \"type\""):
        read_modules(tmp_path)


def test_modules_json_of_the_wrong_kind(tmp_path):
    (tmp_path / "modules.json").write_text('{"0": "Transformer"}')
    with pytest.raises(ConfigError, match="holds a JSON dict where an array belongs"):
        read_modules(tmp_path)
    with pytest.raises(DownloadError, match="where an array belongs"):
        parse_modules({"0": "Transformer"}, tmp_path / "modules.json", error=DownloadError)


# ---------------------------------------------------------------------------- JSON files

@pytest.mark.parametrize("name", ["modules.json", "config.json"])
def test_lfs_pointer_instead_of_json(tmp_path, name):
    """A folder cloned without git lfs: the JSON file is a pointer, and the error says so."""
    (tmp_path / name).write_bytes(LFS)
    with pytest.raises(ConfigError, match="Git LFS pointer.*git lfs pull") as e:
        read_json(tmp_path / name, kind=list if name == "modules.json" else dict)
    assert str(tmp_path / name) in str(e.value)
    if name == "modules.json":
        with pytest.raises(ConfigError, match="Git LFS pointer"):
            read_modules(tmp_path)


# ---------------------------------------------------------------------------- config.json types

MINILM_CONFIG = {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6,
                 "num_attention_heads": 12, "intermediate_size": 1536, "vocab_size": 30522,
                 "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
                 "hidden_act": "gelu", "pad_token_id": 0}


def test_config_values_are_read():
    cfg = encoder_config(MINILM_CONFIG, Path("config.json"))
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size) == (
        384, 6, 12, 1536)
    assert cfg.layer_norm_eps == 1e-12 and cfg.hidden_act == "gelu" and cfg.pad_token_id == 0
    # An integer eps is a number too; null means "not given", so the default applies.
    cfg = encoder_config({**MINILM_CONFIG, "layer_norm_eps": 0, "type_vocab_size": None},
                         Path("config.json"))
    assert cfg.layer_norm_eps == 0.0 and cfg.type_vocab_size == 2


@pytest.mark.parametrize("key, value, expected", [
    ("hidden_size", "384", "a whole number"),
    ("hidden_size", 384.0, "a whole number"),
    ("num_attention_heads", True, "a whole number"),
    ("vocab_size", [30522], "a whole number"),
    ("pad_token_id", "0", "a whole number"),
    ("layer_norm_eps", "1e-12", "a number"),
    ("hidden_act", ["gelu"], "a string"),
    ("model_type", ["bert"], "a string"),
    ("position_embedding_type", 1, "a string"),
])
def test_config_value_of_the_wrong_type(key, value, expected):
    path = Path("some/model/config.json")
    with pytest.raises(ConfigError) as e:
        encoder_config({**MINILM_CONFIG, key: value}, path)
    message = str(e.value)
    print(f"\n{message}")
    assert str(path) in message and repr(key) in message and json.dumps(value) in message
    assert f"must be {expected}" in message


@pytest.mark.parametrize("key, value", [("num_attention_heads", 0), ("hidden_size", -384),
                                        ("pad_token_id", -1)])
def test_config_size_out_of_range(key, value):
    with pytest.raises(ConfigError, match=f"'{key}' is {value}; it must be at least"):
        encoder_config({**MINILM_CONFIG, key: value}, Path("config.json"))


def test_config_missing_key():
    config = {k: v for k, v in MINILM_CONFIG.items() if k != "num_hidden_layers"}
    with pytest.raises(ConfigError, match="config.json has no 'num_hidden_layers'"):
        encoder_config(config, Path("config.json"))


# ---------------------------------------------------------------------------- safetensors header

def test_safetensors_header(tmp_path):
    """A file written by hand in the documented layout: the header comes back without
    __metadata__, and the data starts right after it."""
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, a.nbytes]}}
    text = json.dumps(header).encode() + b"  "  # writers may pad the header with spaces
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + a.tobytes())
    got, data_start = read_safetensors_header(path)
    assert got == {"a": header["a"]}
    assert data_start == 8 + len(text)
    assert path.read_bytes()[data_start:] == a.tobytes()


def test_safetensors_header_missing_file(tmp_path):
    with pytest.raises(ModelFileMissing, match="model.safetensors: no such file"):
        read_safetensors_header(tmp_path / "model.safetensors")


# ---------------------------------------------------------------------------- loading a real folder

def link(src: Path, dst: Path, names: list[str]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (src / name).is_file():
            (dst / name).symlink_to((src / name).resolve())


TRANSFORMER_FILES = ["config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
                     "special_tokens_map.json", "sentence_bert_config.json"]


def test_old_layout_loads_like_the_flat_one(minilm_path, tmp_path):
    """MiniLM's files rearranged the old way (transformer in 0_BERT) give the same vectors."""
    old = tmp_path / "old"
    link(minilm_path, old / "0_BERT", TRANSFORMER_FILES)
    link(minilm_path / "1_Pooling", old / "1_Pooling", ["config.json"])
    write_modules(old, (TRANSFORMER, "0_BERT"), (POOLING, "1_Pooling"), (NORMALIZE, "2_Normalize"))
    texts = ["A man is eating food.", "Someone is having a meal."]
    flat, moved = minisbert.load(minilm_path), minisbert.load(old)
    assert moved.normalize and moved.pooling_modes == flat.pooling_modes
    diff = float(np.abs(flat.encode(texts) - moved.encode(texts)).max())
    print(f"\nflat vs 0_BERT layout: maxdiff = {diff:.1e}")
    assert diff == 0.0


def test_plain_folder_loads_with_mean_pooling_and_a_warning(minilm_path, tmp_path):
    link(minilm_path, tmp_path, TRANSFORMER_FILES)
    with pytest.warns(UserWarning, match="no modules.json.*mean pooling"):
        model = minisbert.load(tmp_path)
    assert model.pooling_modes == ("mean",) and not model.normalize


def test_every_exception_is_exported():
    """Every exception class errors.py defines is importable from minisbert."""
    from minisbert import errors
    defined = {name for name, value in vars(errors).items()
               if isinstance(value, type) and issubclass(value, (MinisbertError, Warning))}
    assert defined <= set(minisbert.__all__), defined - set(minisbert.__all__)
    assert {"InputFileError", "SearchIndexError", "DownloadError"} <= defined
    for name in defined:
        assert getattr(minisbert, name) is getattr(errors, name)
