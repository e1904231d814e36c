"""tokenizer.json files of every style minisbert reads, built here with HuggingFace's
`tokenizers` and transformers (nothing reaches the model hub): small vocabularies trained on
the gettext catalogs (tests/corpus.py), wrapped in the pipeline each model family's file names.

Each `train_<style>_tokenizer(out_dir) -> out_dir` writes tokenizer.json, tokenizer_config.json
and special_tokens_map.json into out_dir, ready to sit in a model folder; `STYLES` lists them.
Deterministic for the same catalogs and library versions. Tests that build model folders for
new families reuse them.

    wordpiece   BERT: BertNormalizer, BertPreTokenizer, WordPiece, [CLS] $A [SEP]
    xlmr        XLM-R as transformers 5 saves it: the stored SentencePiece model's pieces and
                precompiled character map, WhitespaceSplit + Metaspace, Unigram, <s> $A </s>
    xlmr_converted  the same model as older transformers converted it (the seed model's file):
                Precompiled + Replace(" {2,}", " "), Metaspace, <mask> normalized with lstrip
    roberta     RoBERTa as transformers 5 saves it: ByteLevel with GPT-2's regex, BPE,
                RobertaProcessing
    qwen2       Qwen2/Qwen3: NFC, Split on Qwen2's regex, ByteLevel without regex, BPE,
                <|endoftext|> appended by a TemplateProcessing
    llama       Llama 2 / Gemma-style SentencePiece BPE: Prepend("▁") + Replace(" ", "▁"), no
                pre-tokenizer, BPE with byte_fallback and <unk>, <s> $A
    gemma       Gemma 3-style: Metaspace(prepend_scheme "first", split false), BPE with
                byte_fallback, <bos> $A <eos>
    modernbert  ModernBERT (GPT-NeoX's tokenizer): NFC, ByteLevel with regex, BPE,
                [CLS] $A [SEP], runs of spaces as normalized added tokens, [MASK] with lstrip
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import corpus

# Twenty-two languages in fourteen scripts, and English (as roberta_folder.py).
LANGS = ("ja", "zh_CN", "ko", "ar", "hi", "th", "ru", "uk", "he", "el", "fa", "bn", "ta",
         "vi", "tr", "pl", "de", "fr", "es", "pt_BR", "it", "nl")

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
                 r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def training_lines(per_lang: int = 800) -> list[str]:
    """Lines spread over English and every language's catalogs."""
    lines = corpus.spread(corpus.lines(corpus.english("ja")), per_lang)
    for lang in LANGS:
        lines += corpus.spread(corpus.lines(corpus.translations(lang)), per_lang)
    return lines


def _write(out_dir: Path, tok, config: dict, specials: dict) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(
        {**specials, "model_max_length": 512, **config}, indent=2, ensure_ascii=False))
    (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2,
                                                                ensure_ascii=False))
    return out_dir


def _train_byte_level_bpe(specials: list[str], vocab_size: int, pre_tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_lines(), trainer=trainer)
    return tok


# ---------------------------------------------------------------------------- the styles

def train_wordpiece_tokenizer(out_dir: Path, vocab_size: int = 8000) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(training_lines(), trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return _write(out_dir, tok, {"tokenizer_class": "BertTokenizer", "do_lower_case": True},
                  {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                   "cls_token": "[CLS]", "mask_token": "[MASK]"})


def train_xlmr_tokenizer(out_dir: Path, sp_model: Path | None = None) -> Path:
    """transformers 5's XLMRobertaTokenizer around the stored SentencePiece model, saved."""
    import transformers
    import tokenizer_fixtures
    import xlmr_folder
    staging = Path(out_dir).parent / f"{Path(out_dir).name}-sp"
    xlmr_folder.write_tokenizer_files(staging, sp_model or tokenizer_fixtures.SP_MODEL)
    transformers.XLMRobertaTokenizer.from_pretrained(staging).save_pretrained(out_dir)
    shutil.rmtree(staging)
    return Path(out_dir)


def train_xlmr_converted_tokenizer(out_dir: Path, sp_model: Path | None = None) -> Path:
    """The stored SentencePiece model through transformers' XLMRobertaConverter, the way the
    seed model's tokenizer.json was made (before transformers 5)."""
    import types
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import XLMRobertaConverter
    import tokenizer_fixtures
    import xlmr_folder
    sp_model = sp_model or tokenizer_fixtures.SP_MODEL
    original = types.SimpleNamespace(vocab_file=str(sp_model), add_prefix_space=True,
                                     legacy=True, handle_byte_fallback=False,
                                     convert_tokens_to_ids={"<s>": 0, "</s>": 2}.get)
    tok = XLMRobertaConverter(original).converted()
    mask_id = xlmr_folder.sentencepiece_piece_count(sp_model) + 1
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<s>", "<pad>", "</s>", "<unk>")])
    tok.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, normalized=True)])
    assert tok.token_to_id("<mask>") == mask_id
    return _write(out_dir, tok, {"tokenizer_class": "XLMRobertaTokenizer"},
                  {**xlmr_folder.SPECIAL_TOKENS})


def train_roberta_tokenizer(out_dir: Path) -> Path:
    """RoBERTa's byte-level BPE (roberta_folder.py's vocabulary), saved by transformers 5."""
    import roberta_folder
    out_dir = Path(out_dir)
    bpe = roberta_folder.train_bpe(out_dir.parent / f"{out_dir.name}-bpe", vocab_size=8000)
    roberta_folder.write_layout(out_dir, bpe, "transformers-5-save")
    return out_dir


def train_qwen2_tokenizer(out_dir: Path, vocab_size: int = 8000) -> Path:
    from tokenizers import AddedToken, Regex, normalizers, pre_tokenizers, processors
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = _train_byte_level_bpe([], vocab_size, pre)
    tok.normalizer = normalizers.NFC()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    eos = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A <|endoftext|>", pair="$A <|endoftext|> $B:1 <|endoftext|>:1",
        special_tokens=[("<|endoftext|>", eos)])
    return _write(out_dir, tok, {"tokenizer_class": "Qwen2Tokenizer"},
                  {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"})


def _sentencepiece_bpe(vocab_size: int, limit_alphabet: int = 400):
    """A BPE over "▁"-spelled text with Llama's layout: <unk> <s> </s>, then the 256 byte
    pieces <0x00>..<0xFF>, then the learned pieces. limit_alphabet leaves rare characters out,
    so byte fallback is exercised."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=True)
    tok.train_from_iterator(training_lines(), trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False, limit_alphabet=limit_alphabet))
    learned = json.loads(tok.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for piece in sorted(learned["vocab"], key=learned["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    return models.BPE(vocab=vocab, merges=[tuple(m) if not isinstance(m, str) else
                                           tuple(m.split(" ")) for m in learned["merges"]],
                      unk_token="<unk>", byte_fallback=True, fuse_unk=True)


def train_llama_tokenizer(out_dir: Path, vocab_size: int = 8000) -> Path:
    from tokenizers import AddedToken, Tokenizer, normalizers, processors
    tok = Tokenizer(_sentencepiece_bpe(vocab_size))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<unk>", "<s>", "</s>")])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", 1)])
    return _write(out_dir, tok, {"tokenizer_class": "LlamaTokenizer"},
                  {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})


def train_gemma_tokenizer(out_dir: Path, vocab_size: int = 8000) -> Path:
    from tokenizers import AddedToken, Tokenizer, pre_tokenizers, processors
    tok = Tokenizer(_sentencepiece_bpe(vocab_size))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
    # Gemma's names for the first three; a non-special added token that splits words too.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<unk>", "<s>", "</s>")])
    tok.add_tokens([AddedToken("<start_of_turn>", special=False, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
        special_tokens=[("<s>", 1), ("</s>", 2)])
    return _write(out_dir, tok, {"tokenizer_class": "GemmaTokenizer"},
                  {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                   "pad_token": "<unk>"})


def train_modernbert_tokenizer(out_dir: Path, vocab_size: int = 8000) -> Path:
    from tokenizers import AddedToken, normalizers, pre_tokenizers, processors
    tok = _train_byte_level_bpe(["<|endoftext|>", "<|padding|>"], vocab_size,
                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    tok.normalizer = normalizers.NFC()
    # GPT-NeoX's runs of spaces: ordinary added tokens, matched after normalization.
    tok.add_tokens([AddedToken(" " * n, normalized=True) for n in (24, 8, 4, 2)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("[UNK]", "[CLS]", "[SEP]", "[PAD]")])
    tok.add_special_tokens([AddedToken("[MASK]", special=True, lstrip=True, normalized=False)])
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return _write(out_dir, tok, {"tokenizer_class": "PreTrainedTokenizerFast"},
                  {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                   "pad_token": "[PAD]", "mask_token": "[MASK]"})


STYLES = {"wordpiece": train_wordpiece_tokenizer, "xlmr": train_xlmr_tokenizer,
          "xlmr_converted": train_xlmr_converted_tokenizer, "roberta": train_roberta_tokenizer,
          "qwen2": train_qwen2_tokenizer, "llama": train_llama_tokenizer,
          "gemma": train_gemma_tokenizer, "modernbert": train_modernbert_tokenizer}
