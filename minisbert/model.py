"""A sentence-transformers model folder, loaded as sentence-transformers' `SentenceTransformer`:
tokenizer -> encoder -> pooling -> Dense -> (normalize), with the same constructor and methods
(encode, encode_query, encode_document, similarity, ...), returning NumPy arrays.

A sentence-transformers folder is a HuggingFace model folder plus a few small files:
  modules.json                the pipeline: Transformer, Pooling, any Dense, optionally Normalize
  sentence_bert_config.json   max_seq_length and do_lower_case for the Transformer step
  1_Pooling/config.json       which pooling modes are on, and include_prompt
  2_Dense/config.json         a Dense module's widths and activation (weights beside it)
  config_sentence_transformers.json   prompts, default_prompt_name, similarity_fn_name
A plain HuggingFace folder (no modules.json) loads with its family's pooling (mean, for every
family today), as sentence-transformers does, and a warning.

Left out: modules other than these (LSTM, CNN, WordEmbeddings, Router, ...), building a model
from modules, training, and the arguments that only make sense with torch (GPU devices,
multi-process pools, transformers' kwargs, other backends): those are refused by name.
docs/coming-from-sentence-transformers.md lists every name and what differs.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import warnings
from array import array
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import checkpoint, locate, pooling, progress, threads, util, weights
from .dense import Dense, load_dense
from .encoder import encode_tokens
from .errors import (ArgumentError, ConfigError, EmbeddingInputError, MissingDependencyError,
                     ModelFileMissing, PromptError, TruncationWarning, UnsupportedModelError)
from .families import FAMILIES, EncoderConfig, encoder_config, is_sequence_classifier
from .folder import ModelFolder, read_json, read_modules
from .tokenizer import load_tokenizer, read_token_config

def length_batches(lengths: list[int], batch_size: int, max_tokens: int, cores: int = 1):
    """Yield arrays of text indices, longest texts first, each batch at most batch_size texts
    and at most max_tokens places once padded to its longest text.

    Sorting makes texts of a batch about equally long, so little padding is computed; the
    token cap keeps batches of long texts small, because attention's cost grows with
    texts × width², and one long text would otherwise widen 31 short ones.

    cores: how many batches run at once (threads.run_batches). The texts left are shared out
    in equal batches, as many as the caps need rounded up to a multiple of `cores`: 100 texts
    at batch_size 32 on 2 cores go as 4 batches of 25, not as 32, 32, 32 and 4, which would
    leave one core idle while the other ran the third batch of 32.
    """
    order = np.argsort([-n for n in lengths], kind="stable")
    start = made = 0
    while start < len(order):
        width = lengths[order[start]]  # the longest text of this batch
        cap = max(1, min(batch_size, max_tokens // max(width, 1)))
        left = len(order) - start
        total = made + -(-left // cap)  # batches in all, if the rest went at this cap
        total = -(-total // cores) * cores  # rounded up to a multiple of the cores
        size = -(-left // (total - made))  # the rest shared equally: <= cap
        yield order[start:start + size]
        start += size
        made += 1


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


class SentenceTransformer:
    """A loaded sentence encoder, with sentence-transformers' constructor and methods:

        model = SentenceTransformer("all-MiniLM-L6-v2")     # a folder or a hub name
        vectors = model.encode(["A man is eating food.", "Someone is having a meal."])
        scores = model.similarity(vectors, vectors)          # [2, 2]

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

    def __init__(self, model_name_or_path: str | os.PathLike | None = None, *,
                 modules=None, device: str | None = None, prompts: dict[str, str] | None = None,
                 default_prompt_name: str | None = None, cache_folder: str | None = None,
                 trust_remote_code: bool = False, revision: str | None = None,
                 local_files_only: bool = False, token=None, use_auth_token=None,
                 model_kwargs=None, processor_kwargs=None, config_kwargs=None,
                 use_kernels: bool = False, kernel_config=None, model_card_data=None,
                 backend: str = "torch", similarity_fn_name: str | None = None,
                 truncate_dim: int | None = None, max_seq_length: int | None = None,
                 do_lower_case: bool | None = None):
        """Load a model folder, or a hub name's folder (downloaded unless local_files_only).

        Arguments as sentence-transformers names them; the ones minisbert cannot honour (modules,
        a GPU device, remote code, transformers' kwargs, kernels, another backend, a token) are
        refused by name with an ArgumentError saying why. model_card_data is accepted and
        ignored. max_seq_length and do_lower_case are minisbert's own: they override the
        folder's sentence_bert_config.json.
        """
        _refuse_unsupported(modules=modules, device=device, trust_remote_code=trust_remote_code,
                            token=token, use_auth_token=use_auth_token, model_kwargs=model_kwargs,
                            processor_kwargs=processor_kwargs, config_kwargs=config_kwargs,
                            use_kernels=use_kernels, kernel_config=kernel_config, backend=backend)
        root = model_folder(model_name_or_path, cache_folder, revision, local_files_only)
        folder = read_modules(root)
        cfg, self.tokenizer = _transformer(folder, max_seq_length, do_lower_case)
        self.cfg = cfg
        # A decoder embedder's bfloat16 weights stay in the file; its layers widen them one
        # at a time (encoder.decode_tokens).
        self.params = checkpoint.load_params(weights.find_weights(folder.transformer_dir), cfg,
                                             keep_bf16=cfg.blocks.layer == "decoder")
        self.pooling, self.token_modules, self.modules = _modules(
            folder, cfg.hidden_size, pooling.PoolingConfig(FAMILIES[cfg.architecture].pooling))
        self.name = folder.root.resolve().name
        self.device = "cpu"

        # config_sentence_transformers.json, under the caller's arguments (which win)
        saved = read_model_config(folder.root / "config_sentence_transformers.json")
        self.prompts = merge_prompts(prompts, saved.prompts)  # name -> text put before each text
        self.default_prompt_name = saved.default_prompt_name if default_prompt_name is None \
            else default_prompt_name  # used when encode names no prompt
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise PromptError(f"default_prompt_name {self.default_prompt_name!r} is not one of "
                              f"the prompts ({', '.join(map(repr, self.prompts)) or 'none'}); "
                              "name one of them, or pass prompts= with it.")
        self.similarity_fn_name = similarity_fn_name or saved.similarity_fn_name
        self.truncate_dim = None
        self.truncate_dim = self._checked_dim(truncate_dim or saved.truncate_dim)
        self._prompt_lengths: dict[str, int] = {}  # prompt -> its tokens, [CLS] included

    # ------------------------------------------------------------------------ what it outputs

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
        """Length of each sentence vector encode returns: truncate_dim if set, else width."""
        return self.truncate_dim or self.width

    def get_embedding_dimension(self) -> int:
        """Length of each sentence vector encode returns (truncate_dim if set)."""
        return self.dim

    get_sentence_embedding_dimension = get_embedding_dimension  # the name before version 6.3

    @contextlib.contextmanager
    def truncate_embeddings(self, truncate_dim: int | None):
        """Within `with model.truncate_embeddings(64):`, encode cuts vectors to 64 components.
        Not thread-safe: it changes the model (for one call, pass encode's truncate_dim)."""
        before = self.truncate_dim
        self.truncate_dim = self._checked_dim(truncate_dim)
        try:
            yield
        finally:
            self.truncate_dim = before

    def _checked_dim(self, dim: int | None) -> int | None:
        if dim is not None:
            pooling.check_truncate_dim(dim, self.width)
        return dim

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

    @max_seq_length.setter
    def max_seq_length(self, n: int) -> None:
        check_max_seq_length(n, self.cfg)
        self.tokenizer.max_length = n

    # ------------------------------------------------------------------------ similarity

    @property
    def similarity_fn_name(self) -> str:
        """How `similarity` scores two vectors: "cosine" (the default), "dot", "euclidean" or
        "manhattan", from config_sentence_transformers.json unless set."""
        return self._similarity_fn_name or "cosine"

    @similarity_fn_name.setter
    def similarity_fn_name(self, name) -> None:
        name = getattr(name, "value", name)  # sentence-transformers' SimilarityFunction enum
        if name is not None and name not in util.SIMILARITY_FUNCTIONS:
            raise ArgumentError(f"similarity_fn_name {name!r} is not one of "
                                f"{', '.join(map(repr, util.SIMILARITY_FUNCTIONS))}.")
        self._similarity_fn_name = name

    def similarity(self, embeddings1, embeddings2) -> np.ndarray:
        """Score of every vector of embeddings1 against every vector of embeddings2, by
        similarity_fn_name: [n, d], [m, d] -> [n, m]."""
        every_pair, _ = util.SIMILARITY_FUNCTIONS[self.similarity_fn_name]
        return every_pair(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1, embeddings2) -> np.ndarray:
        """Score of embeddings1[i] against embeddings2[i]: [n, d], [n, d] -> [n]."""
        _, row_by_row = util.SIMILARITY_FUNCTIONS[self.similarity_fn_name]
        return row_by_row(embeddings1, embeddings2)

    def __repr__(self):
        steps = [f"Dense({m.in_features}->{m.out_features}, {m.activation})"
                 for m in self.token_modules]
        steps.append(f"Pooling({'+'.join(self.pooling.modes)})")
        steps += ["Normalize" if m is pooling.normalize
                  else f"Dense({m.in_features}->{m.out_features}, {m.activation})"
                  for m in self.modules]
        return (f"SentenceTransformer({self.name!r}, dim={self.dim}, "
                f"max_seq_length={self.max_seq_length}, modules={' -> '.join(steps)})")

    # ------------------------------------------------------------------------ encode

    def encode(self, sentences, prompt_name: str | None = None, prompt: str | None = None,
               batch_size: int = 32, show_progress_bar: bool | None = None,
               output_value: str | None = "sentence_embedding", precision: str = "float32",
               convert_to_numpy: bool = True, convert_to_tensor: bool = False, device=None,
               normalize_embeddings: bool = False, truncate_dim: int | None = None,
               pool=None, chunk_size=None, **kwargs):
        """Embed texts: float32 [n, dim], or [dim] for a single string.

        Like sentence-transformers: each text is stripped (and lowercased if the folder says
        do_lower_case), the prompt is put before it (`prompt` if given, "" for none; else the
        folder's prompt called `prompt_name`; else its default prompt), texts are batched by
        length so little time goes to padding, and the output rows come back in input order.
        After the model's modules, vectors are cut to `truncate_dim` (this call's, else the
        model's), then normalized if `normalize_embeddings`.

        The other outputs, as sentence-transformers gives them:
        - precision "int8", "uint8", "binary", "ubinary": the vectors of this call quantized
          (util.quantize_embeddings; int8/uint8 take their ranges from these vectors).
        - convert_to_tensor: a torch tensor (torch must be installed); convert_to_numpy=False:
          a list of 1-D arrays.
        - output_value "token_embeddings": per text, its token vectors [tokens, width] (after
          any Dense on tokens; no padding). None: per text a dict of input_ids,
          attention_mask, token_embeddings (unpadded) and sentence_embedding (cut, not
          normalized).

        A text longer than max_seq_length tokens (prompt included) is cut to it; the first time
        that happens in a process, a TruncationWarning says so.
        """
        _check_encode_options(batch_size, output_value, precision, device, pool, chunk_size,
                              kwargs)
        single = isinstance(sentences, str)
        prompt = self.resolve_prompt(prompt_name, prompt)
        dim = self.dim if truncate_dim is None else truncate_dim
        pooling.check_truncate_dim(dim, self.width)
        ids = self._token_ids([sentences] if single else sentences, prompt)  # tokenize
        prompt_length = self.prompt_length(prompt) if not self.pooling.include_prompt else 0
        todo = length_batches([len(x) for x in ids], batch_size, self.max_batch_tokens,
                              threads.workers())  # batch
        bar = progress.ProgressBar(len(ids), show_progress_bar, unit="texts", desc="Encoding")
        if output_value == "sentence_embedding":
            out = self._sentence_vectors(ids, todo, prompt_length, dim, normalize_embeddings, bar)
        else:
            out = self._all_outputs(ids, todo, prompt_length, dim, bar)
            if output_value == "token_embeddings":
                out = [text["token_embeddings"] for text in out]
        bar.close()
        if precision != "float32" and len(out):
            out = util.quantize_embeddings(out, precision)  # ranges from this call's vectors
        if output_value == "sentence_embedding" and convert_to_tensor:
            out = _as_tensor(out)
        elif output_value == "sentence_embedding" and not convert_to_numpy:
            out = list(out)  # one 1-D array per text
        return out[0] if single else out

    def _sentence_vectors(self, ids, todo, prompt_length, dim, normalize_embeddings, bar):
        """The sentence vectors of the tokenized texts, in input order: [n, dim]."""
        out = np.empty((len(ids), dim), dtype=np.float32)

        def embed(rows):
            # encode, pool, run the modules: [b, width]; then keep the first dim components
            vectors = pooling.truncate(self._embed_batch([ids[r] for r in rows], prompt_length),
                                       dim)
            # Rows are normalized one by one, so doing it per batch gives the same vectors
            # without a second [n, dim] array at the end.
            out[rows] = pooling.normalize(vectors) if normalize_embeddings else vectors

        threads.run_batches(embed, todo, done=bar.update)  # each batch writes its own rows
        return out

    def _all_outputs(self, ids, todo, prompt_length, dim, bar) -> list[dict]:
        """Per text, its token vectors and sentence vector, unpadded, in input order."""
        out: list[dict] = [{} for _ in ids]

        def embed(rows):
            batch = [ids[r] for r in rows]
            mask, tokens = self._token_vectors(batch)  # [b, s], [b, s, d]
            sentences = pooling.truncate(self.sentence_head(tokens, mask, prompt_length), dim)
            for i, (r, x) in enumerate(zip(rows, batch)):
                out[r] = {"input_ids": x.astype(np.int64),
                          "attention_mask": np.ones(len(x), dtype=np.int64),
                          "token_embeddings": tokens[i, :len(x)],  # [tokens, d], no padding
                          "sentence_embedding": sentences[i]}

        threads.run_batches(embed, todo, done=bar.update)
        return out

    def encode_query(self, sentences, prompt_name: str | None = None, prompt: str | None = None,
                     **kwargs):
        """encode for search queries: with the folder's "query" prompt when none is given,
        and no prompt at all if it has none (never the default prompt), as
        sentence-transformers picks it."""
        if prompt_name is None and prompt is None:
            prompt = self._with_empty_defaults().get("query")
        return self.encode(sentences, prompt_name, prompt, **kwargs)

    def encode_document(self, sentences, prompt_name: str | None = None,
                        prompt: str | None = None, **kwargs):
        """encode for the documents searched: with the first of the prompts "document",
        "passage", "corpus" when none is given, as sentence-transformers picks it."""
        if prompt_name is None and prompt is None:
            prompts = self._with_empty_defaults()
            prompt = next(prompts[p] for p in ("document", "passage", "corpus") if p in prompts)
        return self.encode(sentences, prompt_name, prompt, **kwargs)

    def _with_empty_defaults(self) -> dict[str, str]:
        # sentence-transformers always defines "query" and "document" prompts, "" unless the
        # folder or the caller sets them; so a folder with only a "passage" prompt gets no
        # prompt from encode_document there (document comes first). minisbert keeps them out
        # of self.prompts, so that a prompt_name the folder does not define is still an error.
        return {"query": "", "document": "", **self.prompts}

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

    def _token_vectors(self, batch: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The mask [b, s] and token vectors [b, s, d] of a batch of id arrays, padded to its
        longest: the encoder's, then any Dense modules on tokens."""
        width = max(len(x) for x in batch)
        ids = np.full((len(batch), width), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, x in enumerate(batch):
            ids[row, :len(x)] = x
            mask[row, :len(x)] = 1
        tokens = encode_tokens(ids, mask, self.params, self.cfg)  # [b, s, hidden]
        return mask, self.token_head(tokens)

    def _embed_batch(self, batch: list[np.ndarray], prompt_length: int = 0) -> np.ndarray:
        mask, tokens = self._token_vectors(batch)
        return self.sentence_head(tokens, mask, prompt_length)  # [b, width]

    def head(self, x: np.ndarray, mask: np.ndarray, prompt_length: int = 0) -> np.ndarray:
        """The modules after the encoder: token vectors x [b, s, hidden] (mask [b, s]) ->
        sentence vectors [b, width]."""
        return self.sentence_head(self.token_head(x), mask, prompt_length)

    def token_head(self, x: np.ndarray) -> np.ndarray:
        """The Dense modules on token vectors, if any: [b, s, hidden] -> [b, s, d]."""
        for module in self.token_modules:
            x = module(x)  # Dense on every token vector: [b, s, d] -> [b, s, d']
        return x

    def sentence_head(self, x: np.ndarray, mask: np.ndarray, prompt_length: int = 0) -> np.ndarray:
        """Pooling and the modules after it: token vectors [b, s, d] -> sentence vectors
        [b, width]."""
        x = pooling.pool(x, mask, self.pooling.modes, prompt_length)  # [b, d * modes]
        for module in self.modules:
            x = module(x)  # Dense: [b, d] -> [b, d']; Normalize: unit rows
        return x


SentenceModel = SentenceTransformer  # minisbert's first name for the class


def load(path: str | os.PathLike, *, max_seq_length: int | None = None,
         do_lower_case: bool | None = None, truncate_dim: int | None = None) -> SentenceTransformer:
    """Load a sentence-transformers (or plain HuggingFace) model folder, or a model already
    downloaded (see locate.find_model); never downloads. Same as
    `SentenceTransformer(path, local_files_only=True, ...)`.

    max_seq_length and do_lower_case override what the folder's sentence_bert_config.json says.
    truncate_dim (Matryoshka models) cuts every vector encode returns to its first
    truncate_dim components, unless encode is given its own.
    """
    return SentenceTransformer(path, local_files_only=True, max_seq_length=max_seq_length,
                               do_lower_case=do_lower_case, truncate_dim=truncate_dim)


# ---------------------------------------------------------------------------- reading the folder

def model_folder(name_or_path, cache_folder=None, revision: str | None = None,
                 local_files_only: bool = False) -> Path:
    """The folder SentenceTransformer(name_or_path) loads: a folder path; else a hub name's
    folder here (weights/, the cache: locate.find_model); else, unless local_files_only,
    the hub name downloaded into the cache (download.download). As in sentence-transformers,
    a name without an organization ("all-MiniLM-L6-v2") is one of sentence-transformers'."""
    if name_or_path is None:
        raise ArgumentError("SentenceTransformer() needs a model: minisbert loads saved model "
                            "folders, it does not build models from modules. Pass a folder or a "
                            'hub name, e.g. SentenceTransformer("all-MiniLM-L6-v2").')
    name = os.fspath(name_or_path)
    cache = None if cache_folder is None else Path(cache_folder)
    names = [name]
    if "/" not in name.strip("/") and not locate._is_path(name):
        names.append(f"sentence-transformers/{name}")
    for i, candidate in enumerate(names):
        try:
            return locate.find_model(candidate, cache)
        except ModelFileMissing:
            if locate._is_path(name) or (local_files_only and i == len(names) - 1):
                raise
    from . import download  # urllib and friends, only when something is to be fetched
    return download.download(names[-1], revision=revision or "main", cache=cache)


def _transformer(folder: ModelFolder, max_seq_length: int | None, do_lower_case: bool | None):
    """The Transformer module's config and tokenizer (truncating at max_seq_length: the
    caller's, else sentence_bert_config.json's, else the tokenizer's model_max_length capped
    by the position table, as sentence-transformers does)."""
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
                      "sentence-transformers does.", stacklevel=4)  # the caller of load/__init__
    sbert = read_json(transformer_dir / "sentence_bert_config.json")
    max_seq_length = resolve_max_length(transformer_dir, cfg, max_seq_length, sbert)
    if do_lower_case is None:
        do_lower_case = bool(sbert.get("do_lower_case", False))
    tokenizer = load_tokenizer(transformer_dir, max_seq_length, lowercase=do_lower_case,
                               model_type=cfg.architecture, rows=cfg.vocab_size)
    return cfg, tokenizer


def check_max_seq_length(n, cfg: EncoderConfig) -> None:
    """max_seq_length must fit the position table and leave room for a token besides the two
    special ones."""
    if not (isinstance(n, int) and 2 < n <= cfg.max_tokens):
        raise ArgumentError(f"max_seq_length={n!r} is out of range: this model's position "
                            f"table holds at most {cfg.max_tokens} tokens (and 2 are special "
                            "tokens).")


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
    try:
        check_max_seq_length(max_length, cfg)
    except ArgumentError as e:
        if source is None:  # the caller's value
            raise
        raise ConfigError(f"{transformer_dir / source}: {e} Fix the file, or pass "
                          "max_seq_length to load() (max_length to CrossEncoder).") from None
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


class SavedConfig(NamedTuple):
    """What config_sentence_transformers.json says about using the model."""
    prompts: dict[str, str]
    default_prompt_name: str | None
    similarity_fn_name: str | None
    truncate_dim: int | None


def read_model_config(path: Path) -> SavedConfig:
    """`prompts`, `default_prompt_name`, `similarity_fn_name` and `truncate_dim` of
    config_sentence_transformers.json (none if the file is absent). A prompt of null is "", as
    sentence-transformers reads it."""
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
    similarity = config.get("similarity_fn_name")
    if similarity is not None and similarity not in util.SIMILARITY_FUNCTIONS:
        # sentence-transformers skips a name its model class cannot use ("maxsim") likewise
        similarity = None
    truncate_dim = config.get("truncate_dim")
    if truncate_dim is not None and not (isinstance(truncate_dim, int) and truncate_dim > 0):
        raise ConfigError(f"{path}: truncate_dim is {json.dumps(truncate_dim)}; it should be a "
                          "positive number of dimensions. Fix the file.")
    return SavedConfig(prompts, default, similarity, truncate_dim)


def merge_prompts(given: dict | None, saved: dict[str, str]) -> dict[str, str]:
    """The caller's prompts over the folder's, as sentence-transformers merges them: the
    caller's win, the folder's fill in names the caller left out or set to None, and a None
    left over is "" (no prompt)."""
    if given is not None and not (isinstance(given, dict) and all(
            isinstance(k, str) and isinstance(v, (str, type(None))) for k, v in given.items())):
        raise ArgumentError(f"prompts={given!r}: pass a dict of prompt names to texts, e.g. "
                            '{"query": "query: ", "document": "passage: "}.')
    merged = dict(given or {})
    for name, text in saved.items():
        if merged.get(name) is None:
            merged[name] = text
    return {name: text or "" for name, text in merged.items()}


# ---------------------------------------------------------------------------- what is refused

def _refuse_unsupported(*, modules, device, trust_remote_code, token, use_auth_token,
                        model_kwargs, processor_kwargs, config_kwargs, use_kernels,
                        kernel_config, backend) -> None:
    """An ArgumentError for the first constructor argument minisbert cannot honour, saying why."""
    transformers_kwargs = {"model_kwargs": model_kwargs, "processor_kwargs": processor_kwargs,
                           "config_kwargs": config_kwargs}
    if modules is not None:
        why = ("modules: minisbert builds a model only from a saved folder (modules.json). Save "
               "the model with sentence-transformers and pass its folder.")
    elif str(device) not in ("None", "cpu"):
        why = (f"device={device!r}: minisbert runs on the CPU only, with NumPy. Pass "
               "device=\"cpu\" or leave it out.")
    elif trust_remote_code:
        why = ("trust_remote_code=True: minisbert runs only its own NumPy code for the "
               "architectures it knows, never code from a model repository.")
    elif token not in (None, False) or use_auth_token not in (None, False):
        why = ("token: minisbert downloads public models only. Download a private or gated "
               "model with your own tools and pass its folder.")
    elif any(v for v in transformers_kwargs.values()):
        name = next(k for k, v in transformers_kwargs.items() if v)
        why = (f"{name}: these go to transformers' from_pretrained, which minisbert does not "
               "use; it reads the folder's config.json and tokenizer files as saved, in float32.")
    elif use_kernels or kernel_config is not None:
        why = "use_kernels/kernel_config: these are torch kernels; minisbert computes in NumPy."
    elif backend != "torch":
        why = (f"backend={backend!r}: minisbert is its own NumPy backend and reads the "
               "safetensors (or pytorch_model.bin) weights, not ONNX or OpenVINO files.")
    else:
        return
    raise ArgumentError(f"SentenceTransformer(..., {why}")


def _check_encode_options(batch_size, output_value, precision, device, pool, chunk_size,
                          kwargs) -> None:
    """Refuse, before any work, the encode arguments minisbert cannot honour."""
    if isinstance(device, (list, tuple)) or pool is not None or chunk_size is not None:
        raise ArgumentError("encode(device=[...], pool=..., chunk_size=...) spreads encoding "
                            "over several processes in sentence-transformers; minisbert "
                            "already uses every core in one process (threads.py). Leave them "
                            "out.")
    if str(device) not in ("None", "cpu"):
        raise ArgumentError(f"encode(device={device!r}): minisbert runs on the CPU only. Leave "
                            "device out.")
    if kwargs:
        raise ArgumentError(f"encode() got {', '.join(map(repr, kwargs))}: minisbert's models "
                            "take no extra keyword arguments (tasks and processing_kwargs are "
                            "for sentence-transformers' Router and processor modules).")
    if not (isinstance(batch_size, int) and batch_size > 0):
        raise ArgumentError(f"batch_size must be a positive integer, not {batch_size!r}.")
    if output_value not in ("sentence_embedding", "token_embeddings", None):
        raise ArgumentError(f"output_value={output_value!r}: use \"sentence_embedding\", "
                            "\"token_embeddings\" or None (every output).")
    if precision not in util.PRECISIONS:
        raise EmbeddingInputError(f"precision {precision!r} is not supported; use one of "
                                  f"{', '.join(util.PRECISIONS)}")
    if output_value is None and precision != "float32":
        raise EmbeddingInputError(f"precision={precision!r} with output_value=None: the "
                                  "outputs come as they are; quantize the ones you need with "
                                  "util.quantize_embeddings.")


def _as_tensor(vectors: np.ndarray):
    """encode(convert_to_tensor=True): the array as a torch tensor (sharing its memory)."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(
            "convert_to_tensor=True asks for a torch tensor, and torch is not installed. Leave "
            "it out to get a NumPy array (minisbert.util takes those), or pip install "
            "torch.") from None
    return torch.from_numpy(vectors)
