"""Cross-encoders (rerankers): a pair of texts in, a relevance score out.

A bi-encoder (`SentenceTransformer`) embeds query and passage apart and compares the vectors; a
cross-encoder reads them together, as one sequence, so every query token attends to every
passage token, and a classification head turns the first token's vector into a score:

    pair (query, passage) -> tokenizer.encode_pair    [CLS] q [SEP] p [SEP], token types 0/1
                          -> encoder                  token vectors [b, s, d]
                          -> classifier head          logits [b, labels]
                          -> activation               Sigmoid for one label (a relevance in
                                                      0..1), Identity for more

That is sentence-transformers' `CrossEncoder`, and this class behaves as it does: `predict`
scores pairs, `rank` orders documents for one query; the folder says the activation, the
truncation length (max_length, counting the special tokens, the pair cut "longest first") and
the number of labels. The folder is a HuggingFace `*ForSequenceClassification` folder
(config.json's architectures), as the hub and `CrossEncoder.save_pretrained` write it; the
heads it runs are listed in families.py.

Each text is stripped before tokenizing, as `SentenceTransformer.encode` does
(sentence-transformers 6 does not strip; WordPiece gives the same ids either way, SentencePiece
not for a leading space).

Left out: training, prompts, causal-LM rerankers scored by "yes"/"no" logits (Qwen3-Reranker),
images, and activations other than those of dense.TORCH_ACTIVATIONS.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from . import checkpoint, encoder, progress, threads, weights
from .activations import ACTIVATIONS
from .dense import TORCH_ACTIVATIONS
from .errors import PairInputError, UnsupportedModelError
from .families import encoder_config, head_config, is_sequence_classifier
from .folder import read_json, read_modules
from .model import length_batches, resolve_max_length
from .tokenizer import load_tokenizer

Pair = tuple[str, str]


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))  # minus the max: exp() cannot overflow
    return e / e.sum(axis=-1, keepdims=True)


def _activation_name(path: str, source: str) -> str | None:
    """The name in ACTIVATIONS of a saved activation ("torch.nn.modules.activation.Sigmoid"),
    None for one sentence-transformers would not load either (not torch's: it needs
    trust_remote_code, and falls back to the default with a warning)."""
    if not path.startswith("torch."):
        warnings.warn(f"{source} names the activation {path!r}, which is not torch's; using "
                      "the default activation, as sentence-transformers does.", stacklevel=4)
        return None
    name = path.rsplit(".", 1)[-1]
    if name not in TORCH_ACTIVATIONS:
        raise UnsupportedModelError(f"{source} names the activation {path!r}; minisbert "
                                    f"implements torch's {', '.join(TORCH_ACTIVATIONS)}.")
    return TORCH_ACTIVATIONS[name]


def saved_activation(root, transformer_dir, config: dict, num_labels: int) -> str:
    """The folder's activation, by sentence-transformers' order: config_sentence_transformers.json
    (`activation_fn`, sentence-transformers 6), config.json's `sentence_transformers`
    (4 and 5) or `sbert_ce_default_activation_function` (older), else Sigmoid for one label and
    Identity for more. A name of activations.ACTIVATIONS ("sigmoid", "linear", ...)."""
    st_path = root / "config_sentence_transformers.json"
    st_config = read_json(st_path)
    st_block = config.get("sentence_transformers")
    candidates = [(st_config.get("activation_fn"), st_path)]
    if isinstance(st_block, dict):
        candidates.append((st_block.get("activation_fn"), transformer_dir / "config.json"))
    candidates.append((config.get("sbert_ce_default_activation_function"),
                       transformer_dir / "config.json"))
    for path, source in candidates:
        if isinstance(path, str):
            name = _activation_name(path, str(source))
            if name is not None:
                return name
            break  # an untrusted path: the default, as sentence-transformers
    return "sigmoid" if num_labels == 1 else "linear"


class CrossEncoder:
    """A loaded cross-encoder: `CrossEncoder("weights/ms-marco-MiniLM-L6-v2")`.

    max_length overrides the folder's truncation length (special tokens included);
    activation_fn the folder's activation ("sigmoid", "linear" for none, ... or any function
    of a float32 array). Like SentenceTransformer, one object may serve several threads at once.
    """

    # Cap on padded tokens per batch, as SentenceTransformer.max_batch_tokens (see length_batches).
    max_batch_tokens = 2048

    def __init__(self, path: str | os.PathLike, *, max_length: int | None = None,
                 activation_fn: str | Callable | None = None):
        folder = read_modules(path)
        transformer_dir = folder.transformer_dir
        config_path = transformer_dir / "config.json"
        config = read_json(config_path, required=True)
        if not is_sequence_classifier(config):
            archs = ", ".join(map(str, config.get("architectures") or [])) or "none"
            raise UnsupportedModelError(
                f"{config_path}: architectures {archs}; a cross-encoder is a "
                "*ForSequenceClassification model. Load sentence encoders with minisbert.load.")
        extra = [m.type for m in folder.modules if m.kind != "Transformer"]
        if extra:
            raise UnsupportedModelError(
                f"{folder.modules_json} lists {', '.join(extra)} after the Transformer; a "
                "cross-encoder folder has the Transformer alone (its head is in the checkpoint).")
        self.cfg = encoder_config(config, config_path)
        self.head = head_config(config, config_path)
        sbert = read_json(transformer_dir / "sentence_bert_config.json")
        max_length = resolve_max_length(transformer_dir, self.cfg, max_length, sbert)
        self.tokenizer = load_tokenizer(transformer_dir, max_length,
                                        lowercase=bool(sbert.get("do_lower_case", False)),
                                        model_type=self.cfg.architecture,
                                        rows=self.cfg.vocab_size)
        self._check_type_ids(config_path)
        self.params = checkpoint.load_params(weights.find_weights(transformer_dir), self.cfg,
                                             head=self.head)
        self.activation_fn = (activation_fn if activation_fn is not None else
                              saved_activation(folder.root, transformer_dir, config,
                                               self.head.num_labels))
        self._activation(self.activation_fn)  # refuse an unknown name now, not at predict
        self.name = folder.root.resolve().name

    def _check_type_ids(self, config_path) -> None:
        """The tokenizer's pair template must not use token types the model has no row for
        (a BERT template on a one-type XLM-R model would index past the table). A model
        without a token-type table (ModernBERT) never reads them: any template will do."""
        _, types = self.tokenizer.encode_pair("a", "b")
        rows = self.cfg.type_vocab_size
        if rows and max(types, default=0) >= rows:
            raise UnsupportedModelError(
                f"{config_path}: type_vocab_size is {rows}, but the tokenizer's pair template "
                f"gives token type {max(types)}; the tokenizer files do not belong to this model.")

    @property
    def num_labels(self) -> int:
        return self.head.num_labels

    @property
    def max_length(self) -> int:
        """Most tokens of a pair the model sees, special tokens included; the rest is cut."""
        return self.tokenizer.max_length

    max_seq_length = max_length  # sentence-transformers' newer name

    def __repr__(self):
        activation = getattr(self.activation_fn, "__name__", self.activation_fn)
        return (f"CrossEncoder({self.name!r}, {self.cfg.architecture}, num_labels="
                f"{self.num_labels}, max_length={self.max_length}, activation={activation})")

    # ------------------------------------------------------------------------ scoring

    def predict(self, pairs, batch_size: int = 32, show_progress_bar: bool | None = None,
                activation_fn: str | Callable | None = None, apply_softmax: bool = False,
                convert_to_numpy: bool = True):
        """Score (text, text) pairs: float32 [n] for one label, [n, labels] for more; one
        pair (a 2-tuple of strings) gives a scalar (or [labels]).

        As sentence-transformers: logits -> activation_fn (the folder's unless given) ->
        softmax over the labels if apply_softmax (and labels > 1). With convert_to_numpy
        false, a list of one array (or scalar) per pair.
        """
        single = _is_single_pair(pairs)
        pairs = [pairs] if single else _check_pairs(pairs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive number, not {batch_size}.")
        logits = self.logits(self.tokenize(pairs), batch_size, show_progress_bar)  # [n, labels]
        scores = self.scores(logits, activation_fn, apply_softmax)
        if single:
            return scores[0]
        return scores if convert_to_numpy else list(scores)

    def rank(self, query: str, documents: Sequence[str], top_k: int | None = None,
             return_documents: bool = False, batch_size: int = 32,
             show_progress_bar: bool | None = None,
             activation_fn: str | Callable | None = None) -> list[dict]:
        """Order documents by their score for query, best first: a list of
        {"corpus_id": index in documents, "score": float} (+ "text" with return_documents),
        the first top_k (all if None). Equal scores keep the documents' order."""
        if self.num_labels != 1:
            raise UnsupportedModelError(
                f"rank needs a model with one label (a relevance score); {self.name} has "
                f"{self.num_labels}. Use predict, which returns every label's score.")
        if not isinstance(query, str):
            raise PairInputError(f"query is {type(query).__name__}, not str.")
        if isinstance(documents, str) or not isinstance(documents, Sequence):
            raise PairInputError("documents must be a list of strings.")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
            raise PairInputError(f"top_k is {top_k!r}; it must be a whole number or None.")
        scores = self.predict([(query, doc) for doc in documents], batch_size=batch_size,
                              show_progress_bar=show_progress_bar, activation_fn=activation_fn)
        results = [{"corpus_id": i, "score": float(s)} for i, s in enumerate(scores)]
        if return_documents:
            for r in results:
                r["text"] = documents[r["corpus_id"]]
        results.sort(key=lambda r: r["score"], reverse=True)  # stable: ties keep their order
        return results[:top_k]

    # ------------------------------------------------------------------------ the steps

    def tokenize(self, pairs: Sequence[Pair]) -> list[tuple[list[int], list[int]]]:
        """(ids, token type ids) of each pair, stripped, truncated to max_length."""
        return [self.tokenizer.encode_pair(a.strip(), b.strip()) for a, b in pairs]

    def logits(self, tokenized: list[tuple[list[int], list[int]]], batch_size: int = 32,
               show_progress_bar: bool | None = None) -> np.ndarray:
        """The head's raw output for tokenized pairs: float32 [n, labels], batched by length
        (longest first, at most max_batch_tokens padded places a batch) on the CPU's cores."""
        out = np.empty((len(tokenized), self.num_labels), dtype=np.float32)
        todo = length_batches([len(ids) for ids, _ in tokenized], batch_size,
                              self.max_batch_tokens, threads.workers())

        def run(rows):
            out[rows] = self.logits_batch([tokenized[r] for r in rows])

        bar = progress.ProgressBar(len(tokenized), show_progress_bar, unit="pairs",
                                   desc="Scoring")
        threads.run_batches(run, todo, done=bar.update)  # each batch writes its own rows
        bar.close()
        return out

    def logits_batch(self, batch: list[tuple[list[int], list[int]]]) -> np.ndarray:
        """One batch of tokenized pairs, padded to its longest -> logits [b, labels]."""
        width = max(len(ids) for ids, _ in batch)
        ids = np.full((len(batch), width), self.tokenizer.pad_id, dtype=np.int64)
        types = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, (x, t) in enumerate(batch):
            ids[row, :len(x)], types[row, :len(t)], mask[row, :len(x)] = x, t, 1
        return encoder.classify(ids, mask, self.params, self.cfg, self.head, types)

    def scores(self, logits: np.ndarray, activation_fn: str | Callable | None = None,
               apply_softmax: bool = False) -> np.ndarray:
        """logits [n, labels] -> scores: the activation (this call's, else the model's), then
        [n] for one label, and softmax over the labels if apply_softmax."""
        act = self._activation(self.activation_fn if activation_fn is None else activation_fn)
        scores = np.asarray(act(logits.copy()), dtype=np.float32)  # [n, labels]
        if self.num_labels == 1 and scores.ndim > 1:
            scores = scores[:, 0]  # [n, 1] -> [n]
        if apply_softmax and scores.ndim > 1:
            scores = softmax(scores)
        return scores

    @staticmethod
    def _activation(fn: str | Callable) -> Callable:
        if callable(fn):
            return fn
        if fn in ("identity", "none"):
            fn = "linear"
        if fn not in ACTIVATIONS:
            raise ValueError(f"activation_fn {fn!r} is unknown; pass one of "
                             f"{', '.join(ACTIVATIONS)}, or a function of a NumPy array.")
        return ACTIVATIONS[fn]


# ---------------------------------------------------------------------------- input checks

def _is_single_pair(pairs) -> bool:
    """One pair ("query", "passage") rather than a list of pairs."""
    return isinstance(pairs, (tuple, list)) and len(pairs) == 2 and \
        all(isinstance(t, str) for t in pairs)


def _check_pairs(pairs) -> list[Pair]:
    if isinstance(pairs, str) or not isinstance(pairs, (Sequence, np.ndarray)):
        raise PairInputError(f"predict takes a list of (text, text) pairs, not "
                             f"{type(pairs).__name__}.")
    out = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, np.ndarray):
            pair = pair.tolist()
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2
                and all(isinstance(t, str) for t in pair)):
            raise PairInputError(f"pairs[{i}] is {pair!r:.80}; each pair must be two strings, "
                                 "(query, passage).")
        out.append((pair[0], pair[1]))
    return out
