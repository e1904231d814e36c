"""DistilBERT against sentence-transformers, on random-weight models at the layouts of
msmarco-distilbert-base-v4 (uncased WordPiece, max_seq_length 512) and of the Transformer step
of distiluse-base-multilingual-cased-v2 (cased, 119,547-row vocabulary, max_seq_length 128):
small ones always, the real widths with --slow. Also DistilBERT's sinusoidal position table,
made when the checkpoint lacks it, and config.json's own key names in the errors.

The tokenizer files are all-MiniLM-L6-v2's vocab.txt with a DistilBertTokenizer config, lower-
cased or not; DistilBERT's tokenizer is BERT's, so the ids are checked too.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import corpus
import minisbert
from minisbert import families
from reference import compare, encode_both, write_sentence_transformers_files

LAYOUTS = {
    # model size, tokenizer and sentence-transformers settings of the real folders
    "msmarco-distilbert-base-v4": dict(dim=768, layers=6, heads=12, hidden_dim=3072,
                                       vocab_size=30522, max_positions=512, max_seq_length=512,
                                       lowercase=True),
    "distiluse-base-multilingual-cased-v2": dict(dim=768, layers=6, heads=12, hidden_dim=3072,
                                                 vocab_size=119547, max_positions=512,
                                                 max_seq_length=128, lowercase=False),
}
# The same, small; the position table just holds max_seq_length, so its last row is used.
SMALL = dict(dim=64, layers=2, heads=4, hidden_dim=128, max_positions=64, max_seq_length=64)


def randomize(torch_model, std: float, seed: int = 0) -> None:
    """Every weight redrawn with a large std (sharp attention: a wrong mask, position or
    transpose shows), LayerNorm scales around 1."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in torch_model.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(std * torch.randn(p.shape, generator=gen))


def make_folder(folder, vocab_txt, *, dim, layers, heads, hidden_dim, vocab_size, max_positions,
                max_seq_length, lowercase, sinusoidal=False, std=0.2, activation="gelu"):
    """A sentence-transformers folder (mean pooling) around a random DistilBertModel."""
    from transformers import DistilBertConfig, DistilBertModel
    config = DistilBertConfig(vocab_size=vocab_size, dim=dim, n_layers=layers, n_heads=heads,
                              hidden_dim=hidden_dim, max_position_embeddings=max_positions,
                              activation=activation, sinusoidal_pos_embds=sinusoidal,
                              pad_token_id=0)
    torch_model = DistilBertModel(config).eval()
    randomize(torch_model, std)
    torch_model.save_pretrained(folder)
    shutil.copy(vocab_txt, folder / "vocab.txt")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "do_lower_case": lowercase, "tokenizer_class": "DistilBertTokenizer",
        "model_max_length": 512, "unk_token": "[UNK]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}))
    write_sentence_transformers_files(folder, dim=dim, max_seq_length=max_seq_length)
    return folder


def texts_for(max_seq_length: int) -> list[str]:
    """Real messages spread over the English catalogs, with accents and capitals for the
    cased layout, and a few runs of messages longer than max_seq_length."""
    english = corpus.english()
    assert english, "the gettext catalogs are missing (tests/corpus.py)"
    texts = corpus.spread(english, 240) + corpus.spread(corpus.translations("fr"), 40)
    by_length = sorted(english, key=len, reverse=True)
    texts += [" ".join(by_length[i:i + 3]) for i in range(0, 30, 3)]
    texts += ["", "[MASK]", "a [SEP] b", "Ünïcödé ÀÉÎ naïve café", "中文字符 and 日本語"]
    return list(dict.fromkeys(texts))


def check_against_sentence_transformers(folder, max_seq_length: int) -> None:
    st = pytest.importorskip("sentence_transformers")
    ref_model = st.SentenceTransformer(str(folder), device="cpu")
    ours = minisbert.load(folder)
    assert ours.cfg.architecture == "distilbert" and ours.max_seq_length == max_seq_length
    texts = texts_for(max_seq_length)
    stripped = [t.strip() for t in texts]  # minisbert strips; sentence-transformers 6 does not
    ref_ids = ref_model.tokenizer(stripped, truncation=True, max_length=max_seq_length)["input_ids"]
    our_ids = [ours.tokenizer.encode(t) for t in stripped]
    assert our_ids == ref_ids
    n_cut = sum(len(r) == max_seq_length for r in ref_ids)
    a, b = encode_both(ours, ref_model, stripped, n_cut, max_seq_length)
    assert n_cut >= 5
    compare("pooled", a, b)
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)
    maxdiff, mincos = compare("normalized", minisbert.pooling.normalize(a),
                              minisbert.pooling.normalize(b))
    assert maxdiff <= 1e-5 and mincos >= 1 - 1e-6


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_small_model_matches_sentence_transformers(layout, minilm_path, tmp_path):
    pytest.importorskip("transformers")
    real = LAYOUTS[layout]
    folder = make_folder(tmp_path, minilm_path / "vocab.txt",
                         **{**real, **SMALL, "vocab_size": 30522})
    check_against_sentence_transformers(folder, SMALL["max_seq_length"])


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_real_width_matches_sentence_transformers(layout, minilm_path, tmp_path):
    pytest.importorskip("transformers")
    # std 0.07 at width 768 makes attention about as sharp as 0.2 at width 64, without the
    # chaos that makes torch fp32 itself disagree with fp64 (see test_xlmr's base-size test).
    real = LAYOUTS[layout]
    folder = make_folder(tmp_path, minilm_path / "vocab.txt", **real, std=0.07)
    check_against_sentence_transformers(folder, real["max_seq_length"])


def test_sinusoidal_positions_when_the_checkpoint_lacks_them(minilm_path, tmp_path):
    """sinusoidal_pos_embds: true and no position table saved: both sides make the sine/cosine
    table. (With a table saved, both use it as saved: the small tests above.)"""
    pytest.importorskip("transformers")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    folder = make_folder(tmp_path, minilm_path / "vocab.txt",
                         **{**LAYOUTS["msmarco-distilbert-base-v4"], **SMALL, "vocab_size": 30522},
                         sinusoidal=True, activation="relu")
    path = folder / "model.safetensors"
    tensors = safetensors_numpy.load_file(path)
    name, = (n for n in tensors if n.endswith("position_embeddings.weight"))
    del tensors[name]
    safetensors_numpy.save_file(tensors, path, metadata={"format": "pt"})
    check_against_sentence_transformers(folder, SMALL["max_seq_length"])
    table = minisbert.load(folder).params["embeddings"]["position"]
    assert table.dtype == np.float32 and table.shape == (SMALL["max_positions"], SMALL["dim"])
    # row 1: sin(1), cos(1), sin(1/10000^(2/64)), ...
    np.testing.assert_allclose(table[1, :3], [np.sin(1), np.cos(1), np.sin(10000 ** (-2 / 64))],
                               rtol=1e-6)


def test_config_errors_name_distilberts_keys(tmp_path):
    config = {"model_type": "distilbert", "dim": 64, "n_layers": 2, "n_heads": 4,
              "hidden_dim": 128, "vocab_size": 100, "max_position_embeddings": 64}
    cfg = families.encoder_config(config, tmp_path / "config.json")
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size,
            cfg.type_vocab_size, cfg.layer_norm_eps, cfg.hidden_act) == (64, 2, 4, 128, 0, 1e-12,
                                                                         "gelu")
    for key in ("dim", "n_layers", "n_heads", "hidden_dim"):
        broken = {k: v for k, v in config.items() if k != key}
        with pytest.raises(minisbert.ConfigError, match=rf"config.json has no '{key}'"):
            families.encoder_config(broken, tmp_path / "config.json")
    with pytest.raises(minisbert.UnsupportedModelError, match="activation 'mish'"):
        families.encoder_config({**config, "activation": "mish"}, tmp_path / "config.json")
    with pytest.raises(minisbert.ConfigError, match="'sinusoidal_pos_embds' is 1.*true or false"):
        families.encoder_config({**config, "sinusoidal_pos_embds": 1}, tmp_path / "config.json")
    with pytest.raises(minisbert.UnsupportedModelError, match="dim 64 does not divide into 5"):
        families.encoder_config({**config, "n_heads": 5}, tmp_path / "config.json")
