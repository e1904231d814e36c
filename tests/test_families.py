"""The family table (minisbert/families.py): each entry complete and consistent with the code that
reads it, and a new entry all it takes to run a new model_type whose blocks exist.

NumPy alone, except the last test, which loads all-MiniLM-L6-v2 under another model_type.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

import minisbert
from minisbert import checkpoint, download, encoder, families, pooling, textbook
from minisbert.activations import ACTIVATIONS
from minisbert.families import FAMILIES, REQUIRED, encoder_config
from minisbert.tokenizer import FRONT_ENDS

PACKAGE = Path(minisbert.__file__).parent


def small_config(model_type: str) -> dict:
    """A config.json for `model_type` with every required key set to a small valid value."""
    config = {"model_type": model_type}
    for source in FAMILIES[model_type].config.values():
        if isinstance(source, tuple) and source[1] is REQUIRED:
            key = source[0] if isinstance(source[0], str) else source[0][0]
            config[key] = 4
    if "num_attention_heads" in config:  # heads 2 wide: rotary positions need an even width
        config["num_attention_heads"] = 2
    return config


def _name(name) -> str:
    return name.name if isinstance(name, families.Part) else name


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_names_cover_exactly_the_parameter_tree(model_type):
    cfg = encoder_config(small_config(model_type), Path("config.json"))
    outside, layer = checkpoint.tree_shapes(cfg)
    names = FAMILIES[model_type].names
    assert set(names) >= set(outside) | set(layer)
    for path in set(names) - set(outside) - set(layer):  # a tensor only some configs have
        assert path == "embeddings.token_type", path
    for path in layer:  # every name inside a layer says which layer
        assert "{i}" in _name(names[path]), path
    for path in outside:
        assert "{i}" not in _name(names[path]), path
    # the blocks of a fused tensor: each block once, and together all of them
    parts = {}
    for name in names.values():
        if isinstance(name, families.Part):
            parts.setdefault(name.name, []).append((name.index, name.of))
    for fused, blocks in parts.items():
        of = blocks[0][1]
        assert sorted(blocks) == [(i, of) for i in range(of)], fused


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_blocks_and_defaults_exist(model_type):
    family = FAMILIES[model_type]
    blocks = family.blocks
    for form in (textbook, encoder):  # each block in both forms
        assert blocks.norm in form.NORMS and blocks.feed_forward in form.FEED_FORWARDS, form
    # the only values either encoder implements today
    assert blocks.norm_placement in ("post", "pre")
    assert blocks.positions in ("absolute", "rotary")
    assert blocks.attention in ("bidirectional", "causal")
    assert blocks.layer in ("encoder", "decoder")
    assert blocks.layer == "decoder" or (blocks.attention == "bidirectional"
                                         and not blocks.output_norms)
    assert family.tokenizer in FRONT_ENDS
    assert set(family.pooling) <= set(pooling.MODES)
    assert family.tokenizer_files in download.TOKENIZER_FILES
    assert all(re.compile(pattern) for pattern in family.ignored)
    for name, source in family.config.items():  # every setting is a field of EncoderConfig
        assert name in {f.name for f in dataclasses.fields(families.EncoderConfig)}, name
        if isinstance(source, tuple) and source[0] in ("hidden_act", "hidden_activation"):
            assert source[1] in ACTIVATIONS


def test_no_module_but_the_table_names_a_model_type():
    # The code dispatches on the table's data; a model_type string anywhere else would be a
    # second place a family lives.
    pattern = re.compile("|".join(rf"[\"']{re.escape(t)}[\"']" for t in FAMILIES))
    found = [f"{path.relative_to(PACKAGE)}: {m.group()}"
             for path in sorted(PACKAGE.rglob("*.py")) if path.name != "families.py"
             for m in pattern.finditer(path.read_text(encoding="utf-8"))]
    assert found == []


def test_unknown_model_type_lists_the_families(tmp_path):
    with pytest.raises(minisbert.UnsupportedModelError, match="minisbert runs " + ", ".join(FAMILIES)):
        encoder_config({"model_type": "gpt2", "architectures": ["GPT2Model"]}, tmp_path)


def test_a_new_family_is_one_table_entry(minilm_path, minilm, tmp_path, monkeypatch):
    """A model_type the code has never seen runs once the table has its entry: here MiniLM's
    folder relabelled "bert-copy", with an entry copied from BERT's (as a family that reuses
    every block would be written). Nothing else is told about it."""
    folder = tmp_path / "copy"
    folder.mkdir()
    for path in minilm_path.iterdir():
        if path.name != "config.json":
            (folder / path.name).symlink_to(path)
    config = json.loads((minilm_path / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert-copy"}))
    with pytest.raises(minisbert.UnsupportedModelError, match="'bert-copy'"):
        minisbert.load(folder)
    monkeypatch.setitem(FAMILIES, "bert-copy", dataclasses.replace(FAMILIES["bert"]))
    copy = minisbert.load(folder)
    texts = ["A man is eating food.", "Someone is having a meal.", "Ein Zug fährt ab."]
    np.testing.assert_array_equal(copy.encode(texts), minilm.encode(texts))
    assert copy.cfg.architecture == "bert-copy"
