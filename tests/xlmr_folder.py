"""XLM-RoBERTa model folders for the tests, built here because nothing on this machine reaches
the model hub: a SentencePiece unigram model trained on the gettext catalogs (tests/corpus.py;
the tests use the one stored in tests/fixtures) and a random-weight XLMRobertaModel around it,
saved as a sentence-transformers folder; and the id comparisons with transformers' tokenizer,
with the differences minisbert documents.

The tokenizer files mirror those of sentence-transformers/paraphrase-multilingual-mpnet-base-v2
(less tokenizer.json, which transformers rebuilds from sentencepiece.bpe.model)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import corpus
from reference import save_random_roberta, write_sentence_transformers_files

# Twenty-one languages in fourteen scripts: CJK, Hangul, Arabic, Devanagari, Thai, Cyrillic,
# Hebrew, Greek, Bengali, Tamil, Latin with many diacritics.
LANGS = ("ja", "zh_CN", "ko", "ar", "hi", "th", "ru", "uk", "he", "el", "fa", "bn", "ta",
         "vi", "tr", "pl", "de", "fr", "es", "pt_BR", "it")

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                  "sep_token": "</s>", "pad_token": "<pad>", "cls_token": "<s>",
                  # RoBERTa's convention: "<mask>" swallows the space before it.
                  "mask_token": {"content": "<mask>", "single_word": False, "lstrip": True,
                                 "rstrip": False, "normalized": True}}


def corpus_texts(langs=LANGS) -> list[str]:
    """Every distinct translated message of every language, whole (newlines and all)."""
    texts = []
    for lang in langs:
        texts.extend(corpus.translations(lang))
    return list(dict.fromkeys(texts))


# What scripts/make_tokenizer_fixtures.py trains the stored model with (tests/fixtures/xlmr).
# character_coverage < 1 leaves the rarest characters out, so the tests also see <unk>. The
# thread count is an option too: the same lines give another model with another thread count.
TRAINING = {"vocab_size": 8000, "model_type": "unigram", "character_coverage": 0.9995,
            "num_threads": 2}


def training_lines(per_lang: int = 2000) -> list[str]:
    """Lines spread over every language's catalogs plus English."""
    lines = corpus.spread(corpus.lines(corpus.english("ja")), per_lang)
    for lang in LANGS:
        lines += corpus.spread(corpus.lines(corpus.translations(lang)), per_lang)
    return lines


def train_sentencepiece(path: Path, lines: list[str], **options) -> Path:
    """Train a unigram model like XLM-R's (<unk>=0, <s>=1, </s>=2, NFKC-style normalization).
    Deterministic for the same lines, options and sentencepiece version."""
    import sentencepiece
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, minloglevel=2, **options)
    path.write_bytes(model.getvalue())
    return path


def write_tokenizer_files(folder: Path, sp_model: Path, model_max_length: int = 512) -> Path:
    """sentencepiece.bpe.model, tokenizer_config.json and special_tokens_map.json."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(sp_model, folder / "sentencepiece.bpe.model")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {**SPECIAL_TOKENS, "model_max_length": model_max_length,
         "tokenizer_class": "XLMRobertaTokenizer"}, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS, indent=2))
    return folder


def make_xlmr_folder(folder: Path, sp_model: Path, *, hidden: int, layers: int, heads: int,
                     intermediate: int, max_seq_length: int, max_position_embeddings: int = 514,
                     vocab_size: int | None = None, std: float = 0.2, seed: int = 0) -> Path:
    """A sentence-transformers folder (mean pooling) around a random XLMRobertaModel.

    XLM-R conventions: vocab = pieces + 2 (<pad> and <mask> come on top of SentencePiece's
    pieces), pad id 1, positions numbered from 2 (so max_position_embeddings is the longest
    text + 2), one token type, LayerNorm eps 1e-5."""
    import sentencepiece
    n_pieces = sentencepiece.SentencePieceProcessor(model_file=str(sp_model)).get_piece_size()
    save_random_roberta(folder, "xlm-roberta", vocab_size=vocab_size or n_pieces + 2,
                        hidden=hidden, layers=layers, heads=heads, intermediate=intermediate,
                        max_position_embeddings=max_position_embeddings, std=std, seed=seed)
    write_tokenizer_files(folder, sp_model)
    write_sentence_transformers_files(folder, dim=hidden, max_seq_length=max_seq_length)
    return folder


def write_safetensors(path: Path, tensors: dict) -> Path:
    """float32 arrays as a safetensors file: 8-byte little-endian header length, JSON header
    (name -> dtype, shape, data_offsets), then the data, C order."""
    import numpy as np
    header, offset = {}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    head = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little") + head)
        for a in tensors.values():
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())
    return path


def make_numpy_xlmr_folder(folder: Path, sp_model: Path | None, *, hidden: int, layers: int,
                           heads: int, intermediate: int, max_seq_length: int,
                           normalize: bool = False, seed: int = 0,
                           tokenizer_json: Path | None = None) -> Path:
    """A random-weight XLM-R sentence-transformers folder written with NumPy alone (no torch),
    in HuggingFace's tensor names and layout, for tests that load and run a model without
    comparing it with a reference: errors, memory, threads. Positions: max_seq_length + 2.
    The tokenizer: sp_model with XLM-R's configs, or else tokenizer_json (no SentencePiece
    needed, then)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    if tokenizer_json is not None:
        vocab = len(json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))["model"]["vocab"])
    else:
        vocab = sentencepiece_piece_count(sp_model) + 2
    positions = max_seq_length + 2
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta", "hidden_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads,
        "intermediate_size": intermediate, "vocab_size": vocab,
        "max_position_embeddings": positions, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
        "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "gelu"}, indent=2))
    shapes = {"embeddings.word_embeddings.weight": (vocab, hidden),
              "embeddings.position_embeddings.weight": (positions, hidden),
              "embeddings.token_type_embeddings.weight": (1, hidden),
              "embeddings.LayerNorm.weight": (hidden,), "embeddings.LayerNorm.bias": (hidden,)}
    for i in range(layers):
        layer = f"encoder.layer.{i}."
        for name, out, inp in (("attention.self.query", hidden, hidden),
                               ("attention.self.key", hidden, hidden),
                               ("attention.self.value", hidden, hidden),
                               ("attention.output.dense", hidden, hidden),
                               ("intermediate.dense", intermediate, hidden),
                               ("output.dense", hidden, intermediate)):
            shapes[layer + name + ".weight"] = (out, inp)  # torch's [out, in]
            shapes[layer + name + ".bias"] = (out,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[layer + norm + ".weight"] = shapes[layer + norm + ".bias"] = (hidden,)
    tensors = {name: (1.0 if name.endswith("LayerNorm.weight") else 0.0)
               + 0.2 * rng.standard_normal(shape).astype(np.float32)
               for name, shape in shapes.items()}
    write_safetensors(folder / "model.safetensors", tensors)
    if tokenizer_json is not None:
        shutil.copy(tokenizer_json, folder / "tokenizer.json")
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {**SPECIAL_TOKENS, "model_max_length": 512, "tokenizer_class": "XLMRobertaTokenizer"}))
    else:
        write_tokenizer_files(folder, sp_model)
    write_sentence_transformers_files(folder, dim=hidden, max_seq_length=max_seq_length,
                                      normalize=normalize)
    return folder


def sentencepiece_piece_count(sp_model: Path) -> int:
    import sentencepiece
    return sentencepiece.SentencePieceProcessor(model_file=str(sp_model)).get_piece_size()


# ---------------------------------------------------------------------------- ids and differences

MAX_LEN = 512  # the id comparisons truncate where XLM-R's position table ends


def hf_ids(hf, texts, max_length=MAX_LEN, chunk=20_000) -> list[list[int]]:
    """transformers' ids, truncated like minisbert's. In chunks: the reference keeps a full
    Encoding per text (tokens, offsets, ...), which for the whole corpus at once would take
    3 GB instead of 0.7 GB."""
    texts = list(texts)
    return [ids for i in range(0, len(texts), chunk)
            for ids in hf(texts[i:i + chunk], truncation=True, max_length=max_length)["input_ids"]]


def sp_ids(sp, text, max_length=MAX_LEN) -> list[int]:
    """Plain SentencePiece + XLM-R's renumbering, written out from the table: <s>=0 <pad>=1
    </s>=2 <unk>=3, piece i >= 3 -> i + 1, SentencePiece's unk (0) -> 3."""
    pieces = [3 if i == 0 else i + 1 for i in sp.encode(text)]
    return [0, *pieces[: max_length - 2], 2]


def documented_class(text, sp, hf, ours) -> str | None:
    """Which documented difference explains ours != HF on `text`, or None.

    Each class is checked on its own evidence, not just on the text's characters:
      grapheme   a grapheme cluster of several code points that the two libraries already
                 tokenize differently when it stands alone (HF normalizes per cluster);
      U+0085     NEXT LINE is a word boundary for HF, a character for SentencePiece;
      score tie  the same pieces in a different order: two segmentations of equal score;
      <mask> after normalization  HF finds "<mask>" in the normalized text, we in the raw text.
    """
    import regex  # a dependency of transformers; the stdlib cannot split grapheme clusters
    if "\x85" in text:
        return "U+0085"
    for cluster in set(regex.findall(r"\X", text)):
        if len(cluster) > 1 and hf(cluster)["input_ids"] != sp_ids(sp, cluster):
            return "grapheme"
    a, b = ours.tokenize(text), hf(text, add_special_tokens=False)["input_ids"]
    if a != b and sorted(a) == sorted(b):
        return "score tie"
    if hf.mask_token_id in b and "<mask>" not in text:
        return "<mask> after normalization"
    return None


# One example list per documented class: HF differs, minisbert equals plain SentencePiece.
DOCUMENTED = {
    "grapheme": ["ｶﾞ", "ﾃﾞｰﾀを保存", "ｼﾞｬﾊﾟﾝ", "ａ\u0308", "Ａ\u0301b", "①\u0301",
                 "\u1100\u1161\u11a8"],  # the last is 각 spelled in conjoining jamo
    "U+0085": ["\x85", "a\x85b", "line one\x85line two"],
    # Which strings tie depends on the SentencePiece model (tests/fixtures/xlmr); these come
    # from the corpus and tie "0" + "000" / "000" + "0".
    "score tie": ["\\u0000", "\\u0000 はテキストに変換できません。",
                  "disk- -------------------읽기-------------------- ------------"],
    "<mask> after normalization": ["＜ｍａｓｋ＞", "a ＜mask＞ b"],
}
