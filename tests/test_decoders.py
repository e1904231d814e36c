"""Qwen3-Embedding and EmbeddingGemma against sentence-transformers.

tests/decoder_families.py builds random-weight sentence-transformers folders at each model's
real layout (a narrow width and few layers by default), with tokenizers trained on the
catalogs in each model's style, saved in float32 and in bfloat16. sentence-transformers reads
the same folder in float32 (a bfloat16 file widened on load), so both run the same numbers.

Compared: the token vectors of the transformer (token ids in, last_hidden_state out; the
textbook and the fast form), the sentence vectors of encode() for every prompt of each model,
and the ids. Texts are multilingual catalog messages, some longer than the sliding window (8
tokens here) and than max_seq_length (48 here).
"""

from __future__ import annotations

import numpy as np
import pytest

import corpus
import decoder_families as fam
from minisbert import checkpoint, encoder, textbook
from minisbert.families import encoder_config
from minisbert.folder import read_json
from reference import compare

MAKERS = {"qwen3": fam.make_qwen3_embedding, "gemma3": fam.make_embeddinggemma}
PROMPTS = {"qwen3": fam.QWEN3_PROMPTS, "gemma3": fam.GEMMA_PROMPTS}
CASES = [(f, d) for f in MAKERS for d in ("float32", "bfloat16")]
MAX_SEQ_LENGTH = 48


def texts() -> list[str]:
    """Catalog messages in English and eight other scripts, short and long: some past the
    window of 8 tokens, some past max_seq_length (whole paragraphs of help text). Stripped:
    minisbert strips its input, sentence-transformers 6 does not."""
    out = corpus.spread(corpus.english("ja"), 12)
    for lang in ("ja", "de", "ru", "zh_CN", "ar", "ko", "hi", "el"):
        out += corpus.spread(corpus.translations(lang), 4)
    long = sorted(corpus.english("ja"), key=len)[-3:]  # the longest help texts
    return [t.strip() for t in out + long if t.strip()]


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def case(request, tmp_path_factory):
    """(family, dtype, folder, minisbert's model, sentence-transformers' model in float32)."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    pytest.importorskip("tokenizers")
    import minisbert
    family, dtype = request.param
    folder = MAKERS[family](tmp_path_factory.mktemp(f"{family}-{dtype}"), dtype=dtype,
                            max_seq_length=MAX_SEQ_LENGTH)
    ref = st.SentenceTransformer(str(folder), device="cpu",
                                 model_kwargs={"dtype": torch.float32})
    ours = minisbert.load(folder)  # its own tokenizer.json front end
    return family, dtype, folder, ours, ref


def test_token_vectors_match_transformers(case):
    """Token ids -> last_hidden_state, the reference batch padded as sentence-transformers pads
    it (on the left for Qwen3), ours on the right; textbook and fast form, every real token."""
    import torch
    family, dtype, folder, _, ref = case
    # every other text after the model's first prompt, as a query
    prompt = next(iter(PROMPTS[family].values()))
    batch = [prompt + t if i % 2 else t for i, t in enumerate(texts())]
    hf = ref.tokenizer
    feats = hf(batch, padding=True, truncation=True, max_length=MAX_SEQ_LENGTH,
               return_tensors="pt")
    with torch.no_grad():
        out = ref[0].auto_model(**feats).last_hidden_state.numpy()
    mask_ref = feats["attention_mask"].numpy()
    lengths = mask_ref.sum(axis=1)
    assert lengths.max() == MAX_SEQ_LENGTH and lengths.min() < 8  # past the window and cut
    ids = np.zeros(mask_ref.shape, dtype=np.int64)
    mask = np.zeros_like(ids)
    refs = []
    for i, row in enumerate(feats["input_ids"].numpy()):
        real = mask_ref[i] > 0
        ids[i, :lengths[i]], mask[i, :lengths[i]] = row[real], 1
        refs.append(out[i][real])
    ref_tokens = np.concatenate(refs)

    cfg = encoder_config(read_json(folder / "config.json"), folder / "config.json")
    weights = folder / "model.safetensors"
    for form, run, params in [
            ("textbook", textbook.encode_tokens, checkpoint.load_params(weights, cfg)),
            ("fast", encoder.encode_tokens, checkpoint.load_params(weights, cfg, keep_bf16=True))]:
        got = run(ids, mask, params, cfg)
        ours = np.concatenate([got[i, :n] for i, n in enumerate(lengths)])
        compare(f"{family} {dtype} {form} token vectors", ours, ref_tokens)
        np.testing.assert_allclose(ours, ref_tokens, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("prompt_name", [None, "query", "document"])
def test_sentence_vectors_match_sentence_transformers(case, prompt_name):
    """encode() without a prompt, and with the query and the document prompt."""
    family, dtype, _, ours, ref = case
    batch = texts()
    diff, _ = compare(f"{family} {dtype} prompt {prompt_name!r}",
                      ours.encode(batch, prompt_name=prompt_name),
                      ref.encode(batch, prompt_name=prompt_name))
    assert diff <= 1e-5


def test_every_prompt_name(case):
    """Each of the model's prompts by name (each distinct prompt text once: EmbeddingGemma's
    14 names hold 8 texts), on a few texts."""
    family, dtype, _, ours, ref = case
    batch = corpus.spread(texts(), 8)
    by_text = {}
    for name, text in PROMPTS[family].items():
        by_text.setdefault(text, name)
    worst = 0.0
    for name in by_text.values():
        a = ours.encode(batch, prompt_name=name)
        b = ref.encode(batch, prompt_name=name)
        worst = max(worst, float(np.abs(a - b).max()))
        assert np.abs(a - b).max() <= 1e-5, name
    print(f"\n{family} {dtype}: prompts {', '.join(by_text.values())}: maxdiff = {worst:.2e}")


def test_ids_match_sentence_transformers(case):
    """The ids the encoder sees, prompt included, as sentence-transformers tokenizes them."""
    family, _, _, ours, ref = case
    batch = texts()
    for name in [None, *PROMPTS[family]]:
        prompt = ours.resolve_prompt(name)
        want = [ref.tokenizer(prompt + t, truncation=True, max_length=MAX_SEQ_LENGTH)["input_ids"]
                for t in batch]
        assert ours.tokenize(batch, prompt_name=name) == want, name


def test_config_reads_the_real_layouts(tmp_path):
    """Qwen3-Embedding-0.6B's and EmbeddingGemma's settings as their config.json files state
    them (transformers 4.x keys: rope_theta, rope_local_base_freq), no torch needed."""
    qwen = encoder_config({"model_type": "qwen3", **fam.QWEN3_EMBEDDING_0_6B}, tmp_path)
    assert (qwen.num_heads, qwen.kv_heads, qwen.head_dim) == (16, 8, 128)
    assert qwen.blocks.layer == "decoder" and qwen.blocks.norm == "rms"
    assert qwen.causal and qwen.layer_kinds == ("global",) * 28 and qwen.window == 0
    assert qwen.rope_theta == 1e6 and qwen.scale == 128 ** -0.5
    assert qwen.layer_window(0) == 0 and qwen.norm_offset == 0
    gemma = encoder_config({"model_type": "gemma3_text", **fam.EMBEDDINGGEMMA_300M}, tmp_path)
    assert not gemma.causal and gemma.layer_kinds.count("global") == 4
    assert gemma.blocks.output_norms and not qwen.blocks.output_norms
    assert (gemma.layer_rope_theta(5), gemma.layer_rope_theta(0)) == (1e6, 1e4)
    assert gemma.layer_window(0) == 256 and gemma.layer_window(5) == 0
    assert gemma.embedding_scale == np.float32(768 ** 0.5) and gemma.norm_offset == 1
    assert gemma.scale == 256 ** -0.5 and gemma.hidden_act == "gelu_pytorch_tanh"


@pytest.mark.slow
def test_qwen3_embedding_real_shape_bfloat16(tmp_path):
    """Qwen3-Embedding-0.6B's width and depth (1024, 28 layers, 16 heads over 8, head_dim
    128, feed-forward 3072), random weights in a bfloat16 file, the trained tokenizer's
    vocabulary: sentence vectors against sentence-transformers in float32, with the query
    prompt and without."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    import minisbert
    real = {k: fam.QWEN3_EMBEDDING_0_6B[k] for k in (
        "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "head_dim", "intermediate_size")}
    folder = fam.make_qwen3_embedding(tmp_path / "qwen3", dtype="bfloat16", std=0.03,
                                      max_seq_length=128, **real)
    ref = st.SentenceTransformer(str(folder), device="cpu", model_kwargs={"dtype": torch.float32})
    ours = minisbert.load(folder)
    batch = corpus.spread(texts(), 16)
    for name in (None, "query"):
        diff, _ = compare(f"Qwen3-Embedding-0.6B shape, prompt {name!r}",
                          ours.encode(batch, prompt_name=name), ref.encode(batch, prompt_name=name))
        assert diff <= 1e-5
