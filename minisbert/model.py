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

# model_type in config.json -> does it number positions after padding_idx (fairseq style)?
_ARCHITECTURES = {"bert": False, "xlm-roberta": True}


_REQUIRED = object()
_JSON_TYPES = {int: "a whole number", float: "a number", str: "a string"}


def _setting(config: dict, path: Path, key: str, kind: type, default=_REQUIRED):
    """config[key], checked to be a `kind` (float accepts whole numbers too); a key that is
    absent or null gives `default`, or is a ConfigError when there is none."""
    value = config.get(key)
    if value is None:
        if default is _REQUIRED:
            raise ConfigError(f"{path} has no {key!r}; it is incomplete, download it again.")
        return default
    accepted = (int, float) if kind is float else kind
    if isinstance(value, bool) or not isinstance(value, accepted):  # JSON true is no number
        raise ConfigError(f"{path}: {key!r} is {json.dumps(value)}; it must be "
                          f"{_JSON_TYPES[kind]}. Fix the file, or download it again.")
    return float(value) if kind is float else value


def encoder_config(config: dict, path: Path) -> EncoderConfig:
    """The encoder's settings from config.json (at `path`), each checked for its type."""
    model_type = _setting(config, path, "model_type", str, default=None)
    if model_type not in _ARCHITECTURES:
        archs = ", ".join(map(str, config.get("architectures") or [])) or "none"
        raise UnsupportedModelError(
            f"{path}: model_type {model_type!r} (architectures: {archs}) is not supported; "
            f"minisbert runs {', '.join(_ARCHITECTURES)} encoders.")
    positions = _setting(config, path, "position_embedding_type", str, default="absolute")
    if positions != "absolute":
        raise UnsupportedModelError(f"{path}: position_embedding_type {positions!r} is not "
                                    "supported; minisbert implements absolute positions only.")
    act = _setting(config, path, "hidden_act", str, default="gelu")
    if act not in ACTIVATIONS:
        raise UnsupportedModelError(f"{path}: hidden_act {act!r} is not supported; minisbert "
                                    f"implements {', '.join(ACTIVATIONS)}.")

    def size(key, default=_REQUIRED, least=1):
        n = _setting(config, path, key, int, default)
        if n < least:
            raise ConfigError(f"{path}: {key!r} is {n}; it must be at least {least}. Fix the "
                              "file, or download it again.")
        return n

    cfg = EncoderConfig(
        hidden_size=size("hidden_size"),
        num_layers=size("num_hidden_layers"),
        num_heads=size("num_attention_heads"),
        intermediate_size=size("intermediate_size"),
        vocab_size=size("vocab_size"),
        max_position_embeddings=size("max_position_embeddings"),
        type_vocab_size=size("type_vocab_size", 2),
        layer_norm_eps=_setting(config, path, "layer_norm_eps", float, 1e-12),
        hidden_act=act,
        pad_token_id=size("pad_token_id", 0 if model_type == "bert" else 1, least=0),
        positions_after_padding_idx=_ARCHITECTURES[model_type],
    )
    if cfg.hidden_size % cfg.num_heads:
        raise UnsupportedModelError(f"{path}: hidden_size {cfg.hidden_size} does not divide into "
                                    f"{cfg.num_heads} attention heads.")
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
