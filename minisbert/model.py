"""A sentence-transformers model folder, loaded: tokenizer -> encoder -> pooling -> (normalize).

A sentence-transformers folder is a HuggingFace model folder plus a few small files:
  modules.json                the pipeline: Transformer, Pooling, optionally Normalize
  sentence_bert_config.json   max_seq_length and do_lower_case for the Transformer step
  1_Pooling/config.json       which pooling modes are on
A plain HuggingFace folder (no modules.json) loads with mean pooling, as sentence-transformers
does, and a warning.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from array import array
from pathlib import Path

import numpy as np

from . import checkpoint, parallel, pooling, progress
from .encoder import ACTIVATIONS, EncoderConfig, encode_tokens
from .errors import ConfigError, TruncationWarning, UnsupportedModelError
from .folder import read_json, read_modules
from .tokenizer import Tokenizer, load_tokenizer

_REQUIRED = object()
_JSON_TYPES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}

# The architectures minisbert runs: model_type in config.json -> each EncoderConfig setting,
# either (the config.json key that holds it, its value when the key is absent) or a plain value
# the architecture fixes whatever the file says. Defaults are those of transformers' config
# classes; a key marked _REQUIRED must be in the file.
_BERT_KEYS = {
    "hidden_size": ("hidden_size", _REQUIRED),
    "num_layers": ("num_hidden_layers", _REQUIRED),
    "num_heads": ("num_attention_heads", _REQUIRED),
    "intermediate_size": ("intermediate_size", _REQUIRED),
    "vocab_size": ("vocab_size", _REQUIRED),
    "max_position_embeddings": ("max_position_embeddings", _REQUIRED),
    "type_vocab_size": ("type_vocab_size", 2),
    "layer_norm_eps": ("layer_norm_eps", 1e-12),
    "hidden_act": ("hidden_act", "gelu"),
}
ARCHITECTURES = {
    "bert": {**_BERT_KEYS, "pad_token_id": ("pad_token_id", 0),
             "positions_after_padding_idx": False},
    "xlm-roberta": {**_BERT_KEYS, "pad_token_id": ("pad_token_id", 1),
                    "positions_after_padding_idx": True},
    "roberta": {**_BERT_KEYS, "pad_token_id": ("pad_token_id", 1),
                "positions_after_padding_idx": True},
    "mpnet": {
        **_BERT_KEYS,
        "type_vocab_size": 0,  # no token types
        "pad_token_id": 1,  # MPNet numbers positions after padding index 1, whatever the config
        "positions_after_padding_idx": True,
        # rows of the relative position bias table; the model always uses the first 32
        "relative_attention_buckets": ("relative_attention_num_buckets", 32),
    },
    "distilbert": {
        "hidden_size": ("dim", _REQUIRED),
        "num_layers": ("n_layers", _REQUIRED),
        "num_heads": ("n_heads", _REQUIRED),
        "intermediate_size": ("hidden_dim", _REQUIRED),
        "vocab_size": ("vocab_size", _REQUIRED),
        "max_position_embeddings": ("max_position_embeddings", _REQUIRED),
        "type_vocab_size": 0,  # no token types
        "layer_norm_eps": 1e-12,  # hard-coded in DistilBERT, not in its config
        "hidden_act": ("activation", "gelu"),
        "pad_token_id": ("pad_token_id", 0),
        "positions_after_padding_idx": False,
        "sinusoidal_positions": ("sinusoidal_pos_embds", False),
    },
}
# The kind of value each setting read from config.json holds; every other one is a whole number.
_KINDS = {"layer_norm_eps": float, "hidden_act": str, "sinusoidal_positions": bool}
_LEAST = {"pad_token_id": 0}  # the smallest value a setting may have; 1 for the other numbers


def _setting(config: dict, path: Path, key: str, kind: type, default=_REQUIRED):
    """config[key], checked to be a `kind` (float accepts whole numbers too); a key that is
    absent or null gives `default`, or is a ConfigError when there is none."""
    value = config.get(key)
    if value is None:
        if default is _REQUIRED:
            raise ConfigError(f"{path} has no {key!r}; it is incomplete, download it again.")
        return default
    accepted = (int, float) if kind is float else kind
    # JSON true is no number, although Python's True is an int.
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, accepted):
        raise ConfigError(f"{path}: {key!r} is {json.dumps(value)}; it must be "
                          f"{_JSON_TYPES[kind]}. Fix the file, or download it again.")
    return float(value) if kind is float else value


def encoder_config(config: dict, path: Path) -> EncoderConfig:
    """The encoder's settings from config.json (at `path`), each checked for its type, read
    as ARCHITECTURES says for the file's model_type."""
    model_type = _setting(config, path, "model_type", str, default=None)
    if model_type not in ARCHITECTURES:
        archs = ", ".join(map(str, config.get("architectures") or [])) or "none"
        raise UnsupportedModelError(
            f"{path}: model_type {model_type!r} (architectures: {archs}) is not supported; "
            f"minisbert runs {', '.join(ARCHITECTURES)} encoders.")
    positions = _setting(config, path, "position_embedding_type", str, default="absolute")
    if positions != "absolute":
        raise UnsupportedModelError(f"{path}: position_embedding_type {positions!r} is not "
                                    "supported; minisbert implements absolute positions only.")
    settings = {"architecture": model_type}
    for field, source in ARCHITECTURES[model_type].items():
        if not isinstance(source, tuple):  # fixed by the architecture
            settings[field] = source
            continue
        key, default = source
        kind = _KINDS.get(field, int)
        value = settings[field] = _setting(config, path, key, kind, default)
        least = _LEAST.get(field, 1)
        if kind is int and value < least:
            raise ConfigError(f"{path}: {key!r} is {value}; it must be at least {least}. Fix the "
                              "file, or download it again.")
    cfg = EncoderConfig(**settings)

    keys = {field: source[0] for field, source in ARCHITECTURES[model_type].items()
            if isinstance(source, tuple)}  # for the messages below
    if cfg.hidden_act not in ACTIVATIONS:
        raise UnsupportedModelError(f"{path}: {keys['hidden_act']} {cfg.hidden_act!r} is not "
                                    f"supported; minisbert implements {', '.join(ACTIVATIONS)}.")
    if cfg.hidden_size % cfg.num_heads:
        raise UnsupportedModelError(f"{path}: {keys['hidden_size']} {cfg.hidden_size} does not "
                                    f"divide into {cfg.num_heads} attention heads.")
    if 0 < cfg.relative_attention_buckets < 32:
        raise UnsupportedModelError(
            f"{path}: relative_attention_num_buckets is {cfg.relative_attention_buckets}, but "
            "MPNet always looks up 32 relative position buckets, so the table needs at least 32.")
    return cfg


def batches(lengths: list[int], batch_size: int, max_tokens: int):
    """Yield arrays of text indices, longest texts first, each batch at most batch_size texts
    and at most max_tokens places once padded to its longest text.

    Sorting makes texts of a batch about equally long, so little padding is computed; the
    token cap keeps batches of long texts small, because attention's cost grows with
    texts × width², and one long text would otherwise widen 31 short ones.
    """
    order = np.argsort([-n for n in lengths], kind="stable")
    start = 0
    while start < len(order):
        width = lengths[order[start]]  # the longest text of this batch
        size = max(1, min(batch_size, max_tokens // max(width, 1)))
        yield order[start:start + size]
        start += size


# Truncation is routine for long documents, so it is reported once per process: enough to
# learn that embeddings ignore the end of long texts, without a warning per text or per call.
_truncation_reported = False
_truncation_lock = threading.Lock()


def _report_truncation(cut: array, max_seq_length: int) -> None:
    """Warn, the first time in this process, that texts were cut. cut[i]: tokens cut from text i."""
    global _truncation_reported
    with _truncation_lock:  # encode may run in several threads at once
        if _truncation_reported:
            return
        _truncation_reported = True
    worst = max(range(len(cut)), key=cut.__getitem__)
    warnings.warn(
        f"{sum(n > 0 for n in cut)} text(s) are longer than max_seq_length={max_seq_length} "
        f"tokens, so their last {sum(cut)} tokens in all were cut and do not count in the "
        f"embeddings (texts[{worst}] lost the most: {cut[worst]} tokens). Split long texts into "
        "passages to embed all of them. minisbert reports this once per process.",
        TruncationWarning, stacklevel=4)  # points at the caller of encode


class SentenceModel:
    """A loaded sentence encoder. Build one with `minisbert.load(path)`.

    Several threads may call `encode` on one model at once: encoding changes no state of the
    model (the weights are read-only, each call has its own arrays).
    """

    # Cap on padded tokens per batch (see `batches`). Smaller caps waste less attention on
    # padding, larger ones make bigger matrix products; 2048 was fastest on a 2-core machine.
    max_batch_tokens = 2048

    def __init__(self, tokenizer: Tokenizer, params: dict, cfg: EncoderConfig,
                 pooling_modes: tuple[str, ...], normalize: bool, name: str):
        self.tokenizer = tokenizer
        self.params = params
        self.cfg = cfg
        self.pooling_modes = pooling_modes
        self.normalize = normalize  # the folder has a Normalize module
        self.name = name

    @property
    def dim(self) -> int:
        """Length of each sentence vector."""
        return self.cfg.hidden_size * len(self.pooling_modes)

    @property
    def max_seq_length(self) -> int:
        """Most tokens the encoder sees per text, special tokens included; the rest is cut."""
        return self.tokenizer.max_length

    def __repr__(self):
        return (f"SentenceModel({self.name!r}, dim={self.dim}, max_seq_length={self.max_seq_length}, "
                f"pooling={'+'.join(self.pooling_modes)}, normalize={self.normalize})")

    def encode(self, texts, batch_size: int = 32, normalize_embeddings: bool = False,
               show_progress_bar: bool | None = None) -> np.ndarray:
        """Embed texts: float32 [n, dim], or [dim] for a single string.

        Like sentence-transformers: each text is stripped (and lowercased if the folder says
        do_lower_case), texts are batched by length so little time goes to padding, and the
        output rows come back in input order. A text longer than max_seq_length tokens is cut
        to it; the first time that happens in a process, a TruncationWarning says so.
        """
        single = isinstance(texts, str)
        ids = self._token_ids([texts] if single else texts)  # tokenize: one int32 array per text
        todo = batches([len(x) for x in ids], batch_size, self.max_batch_tokens)  # batch
        normalize = normalize_embeddings or self.normalize
        out = np.empty((len(ids), self.dim), dtype=np.float32)

        def embed(rows):
            pooled = self._embed_batch([ids[r] for r in rows])  # encode and pool: [b, dim]
            # Rows are normalized one by one, so doing it per batch gives the same vectors
            # without a second [n, dim] array at the end.
            out[rows] = pooling.normalize(pooled) if normalize else pooled

        bar = progress.ProgressBar(len(ids), show_progress_bar, unit="texts", desc="Encoding")
        parallel.run_batches(embed, todo, done=bar.update)  # each batch writes its own rows
        bar.close()
        return out[0] if single else out

    def _token_ids(self, texts) -> list[np.ndarray]:
        """Each text's ids (stripped, truncated, special tokens added) as an int32 array.

        Texts are read one at a time and only their ids are kept, so memory grows with the ids
        (at most max_seq_length per text), not with the texts: a generator of long texts is
        never held whole. int32 arrays take 4 bytes per id, lists of Python ints 8 or more.
        """
        ids = []
        cut = array("i")  # tokens cut from each text, 4 bytes per text
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, not str; encode takes a "
                                "string or a list of strings.")
            row, n_cut = self.tokenizer.encode_with_cut(text.strip())
            ids.append(np.array(row, dtype=np.int32))
            cut.append(n_cut)
        if any(cut):
            _report_truncation(cut, self.max_seq_length)
        return ids

    def _embed_batch(self, batch: list[np.ndarray]) -> np.ndarray:
        width = max(len(x) for x in batch)
        ids = np.full((len(batch), width), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, x in enumerate(batch):
            ids[row, :len(x)] = x
            mask[row, :len(x)] = 1
        tokens = encode_tokens(ids, mask, self.params, self.cfg)  # [b, s, d]
        return pooling.pool(tokens, mask, self.pooling_modes)  # [b, dim]


def load(path: str | os.PathLike, *, max_seq_length: int | None = None,
         do_lower_case: bool | None = None) -> SentenceModel:
    """Load a sentence-transformers (or plain HuggingFace) model folder.

    max_seq_length and do_lower_case override what the folder's sentence_bert_config.json says.
    """
    folder = read_modules(path)
    if folder.modules_json is None:
        warnings.warn(f"{folder.root} has no modules.json, so it is not a sentence-transformers "
                      "folder; creating a model with mean pooling, as sentence-transformers does.",
                      stacklevel=2)
    transformer_dir = folder.transformer_dir
    pool_cfg_path = folder.pooling_config
    if pool_cfg_path is None:
        pooling_modes = ("mean",)
    else:
        pooling_modes = pooling.modes_from_config(read_json(pool_cfg_path, required=True),
                                                  pool_cfg_path)

    config_path = transformer_dir / "config.json"
    cfg = encoder_config(read_json(config_path, required=True), config_path)
    sbert = read_json(transformer_dir / "sentence_bert_config.json")
    tok_cfg = read_json(transformer_dir / "tokenizer_config.json")

    # Truncation length: the caller's, else the folder's, else the tokenizer's
    # model_max_length capped by the position table (what sentence-transformers does).
    source = None  # the file max_seq_length comes from, if not from the caller
    if max_seq_length is None:
        max_seq_length, source = sbert.get("max_seq_length"), "sentence_bert_config.json"
    if max_seq_length is None:
        max_seq_length = min(int(tok_cfg.get("model_max_length", cfg.max_tokens)), cfg.max_tokens)
        source = "tokenizer_config.json"
    if not (isinstance(max_seq_length, int) and 2 < max_seq_length <= cfg.max_tokens):
        problem = (f"max_seq_length={max_seq_length!r} is out of range: this model's position "
                   f"table holds at most {cfg.max_tokens} tokens (and 2 are special tokens).")
        if source is None:
            raise ValueError(problem)
        raise ConfigError(f"{transformer_dir / source}: {problem} Fix the file, or pass "
                          "max_seq_length to load().")
    if do_lower_case is None:
        do_lower_case = bool(sbert.get("do_lower_case", False))

    tokenizer = load_tokenizer(transformer_dir, max_seq_length, lowercase=do_lower_case)
    params = checkpoint.load_params(transformer_dir / "model.safetensors", cfg)
    return SentenceModel(tokenizer, params, cfg, pooling_modes, folder.normalize,
                         name=folder.root.resolve().name)
