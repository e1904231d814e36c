"""A sentence-transformers model folder, loaded: tokenizer -> encoder -> pooling -> Dense ->
(normalize).

A sentence-transformers folder is a HuggingFace model folder plus a few small files:
  modules.json                the pipeline: Transformer, Pooling, any Dense, optionally Normalize
  sentence_bert_config.json   max_seq_length and do_lower_case for the Transformer step
  1_Pooling/config.json       which pooling modes are on, and include_prompt
  2_Dense/config.json         a Dense module's widths and activation (weights beside it)
  config_sentence_transformers.json   prompts and default_prompt_name
A plain HuggingFace folder (no modules.json) loads with its family's pooling (mean, for every
family today), as sentence-transformers does, and a warning.

Left out: modules other than these (LSTM, CNN, WordEmbeddings, ...), and
sentence-transformers' encode_query/encode_document (pass prompt_name instead).
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from array import array
from pathlib import Path

import numpy as np

from . import checkpoint, pooling, progress, threads, weights
from .dense import Dense, load_dense
from .encoder import encode_tokens
from .errors import ConfigError, PromptError, TruncationWarning, UnsupportedModelError
from .families import FAMILIES, EncoderConfig, encoder_config, is_sequence_classifier
from .folder import ModelFolder, read_json, read_modules
from .tokenizer import Tokenizer, load_tokenizer, read_token_config

def length_batches(lengths: list[int], batch_size: int, max_tokens: int):
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

    The pipeline, as the folder's modules.json lists it:
        token vectors of the encoder  [b, s, hidden]
        -> token_modules   Dense modules on each token vector (rare)
        -> pooling         one vector per text  [b, hidden * number of modes]
        -> modules         Dense modules and Normalize, in order  [b, dim]

    Several threads may call `encode` on one model at once: encoding changes no state of the
    model (the weights are read-only, each call has its own arrays).
    """

    # Cap on padded tokens per batch (see `length_batches`). Smaller caps waste less attention on
    # padding, larger ones make bigger matrix products; 2048 was fastest on a 2-core machine.
    max_batch_tokens = 2048

    def __init__(self, tokenizer: Tokenizer, params: dict, cfg: EncoderConfig,
                 pooling_config: pooling.PoolingConfig, name: str, *,
                 token_modules: tuple[Dense, ...] = (), modules: tuple = (),
                 prompts: dict[str, str] | None = None, default_prompt_name: str | None = None,
                 truncate_dim: int | None = None):
        self.tokenizer = tokenizer
        self.params = params
        self.cfg = cfg
        self.pooling = pooling_config
        self.token_modules = token_modules
        self.modules = modules  # each a function [b, d] -> [b, d']: a Dense or pooling.normalize
        self.prompts = dict(prompts or {})  # name -> text put before each text
        self.default_prompt_name = default_prompt_name  # used when encode names no prompt
        self.name = name
        self._prompt_lengths: dict[str, int] = {}  # prompt -> its tokens, [CLS] included
        self.truncate_dim = None
        if truncate_dim is not None:
            pooling.check_truncate_dim(truncate_dim, self.width)
            self.truncate_dim = truncate_dim

    @property
    def width(self) -> int:
        """Length of the vectors the last module produces (before any truncate_dim)."""
        for module in reversed(self.modules):
            if isinstance(module, Dense):
                return module.out_features
        hidden = self.token_modules[-1].out_features if self.token_modules else self.cfg.hidden_size
        return hidden * len(self.pooling.modes)

    @property
    def dim(self) -> int:
        """Length of each sentence vector encode returns: truncate_dim if load() was given one."""
        return self.truncate_dim or self.width

    @property
    def pooling_modes(self) -> tuple[str, ...]:
        return self.pooling.modes

    @property
    def normalize(self) -> bool:
        """Does the pipeline end with a Normalize module (unit-length vectors)?"""
        return bool(self.modules) and self.modules[-1] is pooling.normalize

    @normalize.setter
    def normalize(self, on: bool) -> None:
        # Switching it off gives the vectors before the closing Normalize (a server that cuts
        # them to fewer dimensions normalizes after cutting); on appends one.
        body = self.modules[:-1] if self.normalize else self.modules
        self.modules = body + ((pooling.normalize,) if on else ())

    @property
    def max_seq_length(self) -> int:
        """Most tokens the encoder sees per text, special tokens included; the rest is cut."""
        return self.tokenizer.max_length

    def __repr__(self):
        steps = [f"Dense({m.in_features}->{m.out_features}, {m.activation})"
                 for m in self.token_modules]
        steps.append(f"Pooling({'+'.join(self.pooling.modes)})")
        steps += ["Normalize" if m is pooling.normalize
                  else f"Dense({m.in_features}->{m.out_features}, {m.activation})"
                  for m in self.modules]
        return (f"SentenceModel({self.name!r}, dim={self.dim}, max_seq_length={self.max_seq_length}, "
                f"modules={' -> '.join(steps)})")

    def encode(self, texts, batch_size: int = 32, normalize_embeddings: bool = False,
               show_progress_bar: bool | None = None, *, prompt_name: str | None = None,
               prompt: str | None = None, truncate_dim: int | None = None) -> np.ndarray:
        """Embed texts: float32 [n, dim], or [dim] for a single string.

        Like sentence-transformers: each text is stripped (and lowercased if the folder says
        do_lower_case), the prompt is put before it (`prompt` if given, "" for none; else the
        folder's prompt called `prompt_name`; else its default prompt), texts are batched by
        length so little time goes to padding, and the output rows come back in input order.
        After the model's modules, vectors are cut to `truncate_dim` (this call's, else
        load()'s), then normalized if `normalize_embeddings`.

        A text longer than max_seq_length tokens (prompt included) is cut to it; the first time
        that happens in a process, a TruncationWarning says so.
        """
        single = isinstance(texts, str)
        prompt = self.resolve_prompt(prompt_name, prompt)
        dim = self.truncate_dim if truncate_dim is None else truncate_dim
        if dim is None:
            dim = self.width
        pooling.check_truncate_dim(dim, self.width)
        ids = self._token_ids([texts] if single else texts, prompt)  # tokenize: int32 per text
        prompt_length = self.prompt_length(prompt) if not self.pooling.include_prompt else 0
        todo = length_batches([len(x) for x in ids], batch_size, self.max_batch_tokens)  # batch
        out = np.empty((len(ids), dim), dtype=np.float32)

        def embed(rows):
            # encode, pool, run the modules: [b, width]; then keep the first dim components
            vectors = pooling.truncate(self._embed_batch([ids[r] for r in rows], prompt_length),
                                       dim)
            # Rows are normalized one by one, so doing it per batch gives the same vectors
            # without a second [n, dim] array at the end.
            out[rows] = pooling.normalize(vectors) if normalize_embeddings else vectors

        bar = progress.ProgressBar(len(ids), show_progress_bar, unit="texts", desc="Encoding")
        threads.run_batches(embed, todo, done=bar.update)  # each batch writes its own rows
        bar.close()
        return out[0] if single else out

    def resolve_prompt(self, prompt_name: str | None = None, prompt: str | None = None) -> str:
        """The text put before each text: `prompt` if given ("" for none), else the folder's
        prompt called `prompt_name`, else the folder's default prompt, else ""."""
        if prompt is not None:
            return prompt
        if prompt_name is None:
            prompt_name = self.default_prompt_name
            if prompt_name is None:
                return ""
        if prompt_name not in self.prompts:
            known = ", ".join(repr(p) for p in self.prompts) or "none"
            raise PromptError(f"prompt_name {prompt_name!r} is not one of this model's prompts "
                              f"({known}); config_sentence_transformers.json names them. Pass "
                              "one of those, or the prompt text itself as prompt.")
        return self.prompts[prompt_name]

    def prompt_length(self, prompt: str) -> int:
        """How many leading tokens of a text belong to `prompt`: the prompt tokenized alone,
        without its closing special token ([SEP], </s>); so [CLS] counts as the prompt's.
        Pooling leaves them out when the folder says include_prompt: false. 0 for no prompt.
        """
        if not prompt:
            return 0
        if prompt not in self._prompt_lengths:  # tokenized once per prompt
            # encode() always ends with the closing special token: drop exactly that one.
            self._prompt_lengths[prompt] = len(self.tokenizer.encode(prompt)) - 1
        return self._prompt_lengths[prompt]

    def tokenize(self, texts, *, prompt_name: str | None = None,
                 prompt: str | None = None) -> list[list[int]]:
        """The ids the encoder sees for each text, as encode makes them (prompt included)."""
        prompt = self.resolve_prompt(prompt_name, prompt)
        return [self.tokenizer.encode(prompt + text.strip()) for text in texts]

    def _token_ids(self, texts, prompt: str = "") -> list[np.ndarray]:
        """Each text's ids (stripped, prompt put before it, truncated, special tokens added) as
        an int32 array.

        The text is stripped, not the prompt: a prompt such as "query: " keeps its space, as
        sentence-transformers keeps it. (sentence-transformers 6 does not strip the text; for
        WordPiece that gives the same ids, for SentencePiece a leading space would not.)

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
            row, n_cut = self.tokenizer.encode_with_cut(prompt + text.strip())
            ids.append(np.array(row, dtype=np.int32))
            cut.append(n_cut)
        if any(cut):
            _report_truncation(cut, self.max_seq_length)
        return ids

    def _embed_batch(self, batch: list[np.ndarray], prompt_length: int = 0) -> np.ndarray:
        width = max(len(x) for x in batch)
        ids = np.full((len(batch), width), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, x in enumerate(batch):
            ids[row, :len(x)] = x
            mask[row, :len(x)] = 1
        tokens = encode_tokens(ids, mask, self.params, self.cfg)  # [b, s, hidden]
        return self.head(tokens, mask, prompt_length)  # [b, width]

    def head(self, x: np.ndarray, mask: np.ndarray, prompt_length: int = 0) -> np.ndarray:
        """The modules after the encoder: token vectors x [b, s, hidden] (mask [b, s]) ->
        sentence vectors [b, width]."""
        for module in self.token_modules:
            x = module(x)  # Dense on every token vector: [b, s, d] -> [b, s, d']
        x = pooling.pool(x, mask, self.pooling.modes, prompt_length)  # [b, d * modes]
        for module in self.modules:
            x = module(x)  # Dense: [b, d] -> [b, d']; Normalize: unit rows
        return x


def load(path: str | os.PathLike, *, max_seq_length: int | None = None,
         do_lower_case: bool | None = None, truncate_dim: int | None = None) -> SentenceModel:
    """Load a sentence-transformers (or plain HuggingFace) model folder.

    max_seq_length and do_lower_case override what the folder's sentence_bert_config.json says.
    truncate_dim (Matryoshka models) cuts every vector encode returns to its first
    truncate_dim components, unless encode is given its own.
    """
    folder = read_modules(path)
    transformer_dir = folder.transformer_dir
    config_path = transformer_dir / "config.json"
    config = read_json(config_path, required=True)
    cfg = encoder_config(config, config_path)
    if is_sequence_classifier(config) and folder.pooling_config is None:
        raise UnsupportedModelError(
            f"{config_path} describes {config['architectures'][0]}, a cross-encoder: it scores "
            "pairs of texts instead of embedding them. Load it with minisbert.CrossEncoder.")
    family = FAMILIES[cfg.architecture]
    if folder.modules_json is None:
        warnings.warn(f"{folder.root} has no modules.json, so it is not a sentence-transformers "
                      f"folder; creating a model with {'+'.join(family.pooling)} pooling, as "
                      "sentence-transformers does.", stacklevel=2)
    sbert = read_json(transformer_dir / "sentence_bert_config.json")
    max_seq_length = resolve_max_length(transformer_dir, cfg, max_seq_length, sbert)
    if do_lower_case is None:
        do_lower_case = bool(sbert.get("do_lower_case", False))

    tokenizer = load_tokenizer(transformer_dir, max_seq_length, lowercase=do_lower_case,
                               model_type=cfg.architecture, rows=cfg.vocab_size)
    params = checkpoint.load_params(weights.find_weights(transformer_dir), cfg)
    pool_cfg, token_modules, modules = _modules(folder, cfg.hidden_size,
                                                pooling.PoolingConfig(family.pooling))
    prompts, default_prompt_name = read_prompts(folder.root / "config_sentence_transformers.json")
    return SentenceModel(tokenizer, params, cfg, pool_cfg, name=folder.root.resolve().name,
                         token_modules=token_modules, modules=modules, prompts=prompts,
                         default_prompt_name=default_prompt_name, truncate_dim=truncate_dim)


def resolve_max_length(transformer_dir: Path, cfg: EncoderConfig, max_length: int | None,
                       sbert: dict) -> int:
    """Truncation length, special tokens included: the caller's `max_length`, else the
    folder's (sentence_bert_config.json, `sbert`), else the tokenizer's model_max_length
    capped by the position table (what sentence-transformers does); checked to fit the table."""
    source = None  # the file the length comes from, if not from the caller
    if max_length is None:
        max_length, source = sbert.get("max_seq_length"), "sentence_bert_config.json"
    if max_length is None:
        tok_cfg = read_token_config(transformer_dir / "tokenizer_config.json")  # types checked
        max_length = min(int(tok_cfg.get("model_max_length", cfg.max_tokens)), cfg.max_tokens)
        source = "tokenizer_config.json"
    if not (isinstance(max_length, int) and 2 < max_length <= cfg.max_tokens):
        problem = (f"max_seq_length={max_length!r} is out of range: this model's position "
                   f"table holds at most {cfg.max_tokens} tokens (and 2 are special tokens).")
        if source is None:
            raise ValueError(problem)
        raise ConfigError(f"{transformer_dir / source}: {problem} Fix the file, or pass "
                          "max_seq_length to load() (max_length to CrossEncoder).")
    return max_length


def _modules(folder: ModelFolder, hidden_size: int, default_pooling: pooling.PoolingConfig):
    """The modules after the Transformer, read in modules.json's order and checked to fit:
    (pooling config, Dense modules on token vectors, Dense/Normalize on sentence vectors).

    The width is followed along the way (hidden size, then hidden size × pooling modes, then
    each Dense's out_features), so a Dense whose in_features does not fit says so.
    """
    width = hidden_size
    pool_cfg, token_modules, modules = None, [], []
    problem = None if folder.modules[0].kind == "Transformer" else "the Transformer is not first"
    for module in folder.modules[1:] if problem is None else ():
        where = folder.folder(module)
        if module.kind == "Pooling":
            path = where / "config.json"
            pool_cfg = pooling.read_config(read_json(path, required=True), path)
            width *= len(pool_cfg.modes)
        elif module.kind == "Dense":
            dense = load_dense(where, width)
            if dense.on_tokens != (pool_cfg is None):
                problem = (f"the Dense module in {module.path}/ works on "
                           f"{'token' if dense.on_tokens else 'sentence'} vectors but comes "
                           f"{'after' if pool_cfg else 'before'} Pooling")
            (token_modules if dense.on_tokens else modules).append(dense)
            width = dense.out_features
        elif module.kind == "Normalize":
            if pool_cfg is None:
                problem = "Normalize comes before Pooling"
            modules.append(pooling.normalize)
        if problem:
            break
    if problem:
        raise UnsupportedModelError(f"{folder.modules_json}: {problem}; minisbert runs "
                                    "Transformer, [Dense on tokens], Pooling, [Dense], "
                                    "[Normalize], in that order.")
    if pool_cfg is None:
        if token_modules or modules:
            raise UnsupportedModelError(f"{folder.modules_json} has no Pooling module, so its "
                                        "modules give token vectors, not sentence vectors.")
        pool_cfg = default_pooling  # a plain folder: the family's (mean for all five today)
    return pool_cfg, tuple(token_modules), tuple(modules)


def read_prompts(path: Path) -> tuple[dict[str, str], str | None]:
    """`prompts` and `default_prompt_name` of config_sentence_transformers.json (none if the
    file is absent). A prompt of null is "", as sentence-transformers reads it."""
    config = read_json(path)
    prompts = config.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(
            isinstance(k, str) and isinstance(v, (str, type(None))) for k, v in prompts.items()):
        raise ConfigError(f"{path}: prompts is {json.dumps(prompts)}; it should map prompt names "
                          'to texts, e.g. {"query": "query: "}. Fix the file.')
    prompts = {name: text or "" for name, text in prompts.items()}
    default = config.get("default_prompt_name")
    if default is not None and (not isinstance(default, str) or default not in prompts):
        raise ConfigError(f"{path}: default_prompt_name is {json.dumps(default)[:80]}, which is not "
                          f"one of its prompts ({', '.join(map(repr, prompts)) or 'none'}). "
                          "Fix the file.")
    return prompts, default
