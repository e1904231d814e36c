"""ModernBERT, GTE and NomicBERT against transformers (and sentence-transformers) at the layouts
of real models: random weights, built by tests/encoder_families.py.

- Token ids straight into both encoders: transformers' last_hidden_state against minisbert's
  encode_tokens, and the pooled, normalized vectors, for texts shorter and longer than a local
  window, up to the layout's length limit.
- Whole folders through sentence-transformers (tokenizer, prompts, pooling, Normalize,
  truncate_dim) where minisbert has the folder's tokenizer.
- One 8,192-token text through a 12-head ModernBERT: equal to transformers, with minisbert's
  peak memory measured.

The default run uses small widths (each layout's `small`); --slow adds the real widths.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import minisbert
from minisbert import checkpoint, pooling
from minisbert.encoder import encode_tokens
from minisbert.families import encoder_config
from reference import compare

import encoder_families
from encoder_families import LAYOUTS

# Normalized embeddings within 1e-5 of the reference; token vectors atol 1e-4 + rtol 1e-5.
NORMALIZED, ATOL, RTOL = 1e-5, 1e-4, 1e-5


@pytest.fixture(scope="session")
def tokenizer_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("family-tokenizers")


@pytest.fixture(scope="session")
def family_folders(tmp_path_factory):
    """folders(name, size) -> (minisbert's folder, the reference folder), built once each."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("families")
    made = {}

    def folders(name: str, size: str = "small"):
        if (name, size) not in made:
            made[name, size] = encoder_families.make_folders(
                root / size, name, size, tokenizer_cache=None)
        return made[name, size]
    return folders


def reference_tokens(ref_folder: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """transformers' last_hidden_state for padded ids [b, s], as sentence-transformers runs it."""
    import torch
    import transformers
    model = transformers.AutoModel.from_pretrained(ref_folder, attn_implementation="sdpa").eval()
    with torch.inference_mode():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    return out.last_hidden_state.numpy()


def lengths_for(cfg, size: str) -> list[int]:
    """Ragged lengths: a single token, texts inside and beyond a local window, runs of equal
    length, and one at the length limit of the small run (real widths: a 2,048-token text)."""
    window = cfg.window or 8
    longest = 2048 if size == "real" else 700
    return [1, 2 * window + 5, window, window, 3, longest, 2 * window + 5, window + 1, 17]


def random_ids(vocab: int, lengths: list[int], pad: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    ids = np.full((len(lengths), max(lengths)), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        real = rng.integers(0, vocab - 1, n)
        ids[row, :n] = real + (real >= pad)  # never the pad id
        mask[row, :n] = 1
    return ids, mask


def check_tokens(name: str, ours: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> None:
    real = mask.astype(bool)
    a, b = ours[real].astype(np.float64), ref[real].astype(np.float64)
    worst = float((np.abs(a - b) - RTOL * np.abs(b)).max())
    compare(f"{name} tokens", a, b)
    print(f"{name}: worst |diff| - {RTOL}·|ref| = {worst:.3e} (atol {ATOL})")
    assert worst <= ATOL
    for mode in ("mean", "cls"):
        pooled = [pooling.normalize(pooling.pool(t, mask, (mode,))) for t in (ours, ref)]
        maxdiff, _ = compare(f"{name} normalized {mode}", *pooled)
        assert maxdiff <= NORMALIZED


def load_encoder(folder: Path):
    """minisbert's encoder settings and weights of a folder (no tokenizer needed)."""
    config = json.loads((folder / "config.json").read_text())
    cfg = encoder_config(config, folder / "config.json")
    return cfg, checkpoint.load_params(folder / "model.safetensors", cfg)


def run_ids(family_folders, name: str, size: str) -> None:
    ours_dir, ref_dir = family_folders(name, size)
    cfg, params = load_encoder(ours_dir)
    pad = json.loads((ref_dir / "config.json").read_text()).get("pad_token_id") or 0
    ids, mask = random_ids(cfg.vocab_size, lengths_for(cfg, size), pad)
    ours = encode_tokens(ids, mask, params, cfg)
    check_tokens(f"{name} ({size})", ours, reference_tokens(ref_dir, ids, mask), mask)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_token_ids_through_both_encoders(family_folders, name):
    run_ids(family_folders, name, "small")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_token_ids_through_both_encoders_real_widths(family_folders, name):
    run_ids(family_folders, name, "real")


def test_configs_read_as_the_reference_reads_them(family_folders):
    # What minisbert reads from each hub-style config: the layer kinds, window and rotary
    # bases that transformers' own config object holds for the same model.
    import transformers
    for name, layout in LAYOUTS.items():
        ours_dir, ref_dir = family_folders(name)
        cfg, _ = load_encoder(ours_dir)
        ref = transformers.AutoConfig.from_pretrained(ref_dir)
        if layout.family == "modernbert":
            kinds = tuple("local" if t == "sliding_attention" else "global"
                          for t in ref.layer_types)
            assert cfg.layer_kinds == kinds
            assert cfg.window == ref.sliding_window
            assert cfg.rope_theta == ref.rope_parameters["full_attention"]["rope_theta"]
            assert cfg.local_rope_theta == ref.rope_parameters["sliding_attention"]["rope_theta"]
        else:
            assert cfg.layer_kinds == ()
            assert cfg.rope_theta == ref.rope_parameters["rope_theta"]
            assert cfg.rope_scale == pytest.approx(ref.rope_parameters.get("factor", 1.0),
                                                   rel=1e-15)
        print(f"\n{name}: {cfg.layer_kinds or 'all global'}, window {cfg.window}, theta "
              f"{cfg.rope_theta}/{cfg.local_rope_theta}, scale {cfg.rope_scale}")


# ---------------------------------------------------------------------------- 8,192 tokens

LONG = {"hidden_size": 192, "intermediate_size": 288, "num_hidden_layers": 3,
        "num_attention_heads": 12, "local_attention": 128}


def test_8192_tokens_in_bounded_memory(tmp_path):
    # One 8,192-token text through a 12-head ModernBERT (global, local, global layers): equal
    # to transformers, and minisbert's peak memory far below the [12, 8192, 8192] float32
    # scores (3.2 GB) a whole-matrix attention would hold.
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    ours_dir, ref_dir = encoder_families.make_folders(
        tmp_path, "gte-modernbert-base", "small", tokenizer_cache=None, overrides=LONG)
    check_long_text(ours_dir, ref_dir)


@pytest.mark.slow
def test_8192_tokens_at_gte_modernbert_base_width(tmp_path):
    pytest.importorskip("torch")
    ours_dir, ref_dir = encoder_families.make_folders(
        tmp_path, "gte-modernbert-base", "real", tokenizer_cache=None)
    check_long_text(ours_dir, ref_dir)


def check_long_text(ours_dir: Path, ref_dir: Path) -> None:
    import time
    cfg, params = load_encoder(ours_dir)
    n = 8192
    ids, mask = random_ids(cfg.vocab_size, [n], 0, seed=3)
    tracemalloc.start()
    start = time.perf_counter()
    ours = encode_tokens(ids, mask, params, cfg)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_scores = cfg.num_heads * n * n * 4
    # The largest array a layer makes is the gated feed-forward's [tokens, 2 * intermediate];
    # the budget is four of those and 64 MiB of score blocks, which stays well under one
    # layer's whole-matrix scores (asserted, so the budget cannot drift up to them).
    widest = n * 2 * max(cfg.hidden_size, cfg.intermediate_size) * 4
    budget = 4 * widest + (64 << 20)
    print(f"\n{n} tokens, {cfg.num_heads} heads, {cfg.num_layers} layers: minisbert "
          f"{seconds:.1f} s, peak traced memory {peak / 2**20:.0f} MiB (budget "
          f"{budget / 2**20:.0f} MiB; whole-matrix scores would be {full_scores / 2**20:.0f} MiB)")
    assert budget < full_scores / 8
    assert peak < budget
    start = time.perf_counter()
    ref = reference_tokens(ref_dir, ids, mask)
    print(f"transformers: {time.perf_counter() - start:.1f} s")
    check_tokens(f"{n} tokens", ours, ref, mask)


# ---------------------------------------------------------------------------- whole folders

# Languages of the catalogs the folder texts come from: Latin, CJK, Cyrillic, Arabic, Indic,
# Thai, Greek, Hebrew scripts.
FOLDER_LANGS = ("ja", "zh_CN", "ko", "ru", "ar", "hi", "th", "el", "he", "de", "fr", "vi")
SMALL_MAX_SEQ_LENGTH = 96  # the small folders cut texts here, so long texts are cut
REAL_MAX_SEQ_LENGTH = 1024  # the real widths' folder tests: past the local window of 128


@pytest.fixture(scope="module")
def folder_texts():
    """Catalog messages in many languages (an even spread: every message of a catalog goes
    through the tokenizer tests; here each text costs two encoders), and long texts made of
    whole catalogs' lines: longer than every small layout's window and past max_seq_length."""
    import corpus
    texts = list(corpus.spread(corpus.english("ja"), 12))
    for lang in FOLDER_LANGS:
        texts += corpus.spread(corpus.translations(lang), 5)
    for lang in ("ja", "ru", "de"):
        texts.append(" ".join(corpus.lines(corpus.translations(lang), 400)))
    texts = [t.strip() for t in texts if t.strip()]  # minisbert strips; compare stripped
    return list(dict.fromkeys(texts))


@pytest.fixture(scope="module")
def folder_pair(tmp_path_factory, tokenizer_cache):
    """folder_pair(name, size) -> (minisbert's model, sentence-transformers'), built once each."""
    st = pytest.importorskip("sentence_transformers")
    root = tmp_path_factory.mktemp("family-folders")
    made = {}

    def pair(name: str, size: str = "small"):
        if (name, size) not in made:
            ours_dir, ref_dir = encoder_families.make_folders(
                root / size, name, size, tokenizer_cache=tokenizer_cache)
            # Cut long texts early, in both folders: past every window, short of the 8,192
            # tokens that test_8192_tokens_at_gte_modernbert_base_width takes on its own (at the
            # real widths an 8,192-token text takes half a minute per engine, per prompt).
            limit = SMALL_MAX_SEQ_LENGTH if size == "small" else REAL_MAX_SEQ_LENGTH
            for folder in (ours_dir, ref_dir):
                path = folder / "sentence_bert_config.json"
                config = json.loads(path.read_text())
                path.write_text(json.dumps({**config,
                                            "max_seq_length": min(limit, config["max_seq_length"])}))
            made[name, size] = (minisbert.load(ours_dir),
                                st.SentenceTransformer(str(ref_dir), device="cpu"))
        return made[name, size]
    return pair


def reference_ids(st_model, texts: list[str]) -> list[list[int]]:
    """The ids sentence-transformers gives each text (its own tokenize, padding removed)."""
    out = []
    for text in texts:
        features = st_model.tokenize([text])
        n = int(features["attention_mask"][0].sum())
        out.append(features["input_ids"][0, :n].tolist())
    return out


def run_folder(folder_pair, folder_texts, name: str, size: str) -> None:
    import warnings
    ours, ref = folder_pair(name, size)
    layout = LAYOUTS[name]
    texts = folder_texts
    if size == "real":  # a few messages of each kind and the long texts: each costs 22 layers twice
        texts = texts[:6] + texts[12:60:8] + texts[-3:]
    longest = max(len(x) for x in ours.tokenize(texts))
    print(f"\n{name} ({size}): {len(texts)} texts, longest {longest} tokens "
          f"(max_seq_length {ours.max_seq_length}, window {ours.cfg.window or 'none'})")
    assert longest == ours.max_seq_length  # the long texts are cut
    for prompt_name in (None, *layout.prompts):
        prompt = layout.prompts.get(prompt_name, "")
        theirs = reference_ids(ref, [prompt + t for t in texts])
        mine = ours.tokenize(texts, prompt_name=prompt_name)
        bad = [i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b]
        assert not bad, f"{prompt_name}: text {bad[0]}: {texts[bad[0]]!r}\n{mine[bad[0]]}\n" \
                        f"{theirs[bad[0]]}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", minisbert.TruncationWarning)
            a = ours.encode(texts, prompt_name=prompt_name, normalize_embeddings=True)
        b = ref.encode(texts, prompt_name=prompt_name, normalize_embeddings=True)
        maxdiff, _ = compare(f"{name} prompt {prompt_name!r} normalized", a, b)
        assert maxdiff <= NORMALIZED
    if name == "nomic-embed-text-v1.5":  # Matryoshka: the first 64 components, renormalized
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", minisbert.TruncationWarning)
            a = ours.encode(texts, prompt_name="search_query", truncate_dim=64,
                            normalize_embeddings=True)
        b = ref.encode(texts, prompt_name="search_query", truncate_dim=64,
                       normalize_embeddings=True)
        assert a.shape == b.shape == (len(texts), 64)
        maxdiff, _ = compare(f"{name} truncate_dim=64", a, b)
        assert maxdiff <= NORMALIZED


# One layout of each family by default (the others with --slow, at reduced and real widths).
DEFAULT_LAYOUTS = {"gte-modernbert-base", "gte-multilingual-base", "nomic-embed-text-v1.5"}


@pytest.mark.parametrize("name", [n if n in DEFAULT_LAYOUTS else
                                  pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(LAYOUTS)])
def test_folders_as_sentence_transformers(folder_pair, folder_texts, name):
    run_folder(folder_pair, folder_texts, name, "small")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_folders_as_sentence_transformers_real_widths(folder_pair, folder_texts, name):
    run_folder(folder_pair, folder_texts, name, "real")


def test_verify_runs_on_the_families(folder_pair, tokenizer_cache, tmp_path):
    # `minisbert verify` needs to know nothing of the family: the transformers-config folder of
    # each family (the one sentence-transformers loads) passes it. (The hub folders of GTE and
    # NomicBERT name remote code, which the reference cannot run offline.)
    from minisbert import verify
    for name in ("modernbert-embed-base", "gte-multilingual-base", "nomic-embed-text-v1.5"):
        _, ref_dir = encoder_families.make_folders(tmp_path, name, "small",
                                                   tokenizer_cache=tokenizer_cache)
        report = verify.verify(ref_dir)
        print(f"\n{name}: {report.ref.name}, ok={report.ok}")
        assert report.ok
