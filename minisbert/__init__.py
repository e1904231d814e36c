"""minisbert: Sentence-BERT inference in NumPy.

    from minisbert import SentenceTransformer      # was: from sentence_transformers import ...
    model = SentenceTransformer("all-MiniLM-L6-v2")  # a folder, or a model in weights/ or the cache
    vectors = model.encode(["A man is eating food.", "Someone is having a meal."])
    scores = model.similarity(vectors, vectors)      # [2, 2] cosine similarities

`minisbert.load(folder)` is the same model, loaded from a folder (it never downloads).

    reranker = minisbert.CrossEncoder("weights/ms-marco-MiniLM-L6-v2")
    reranker.rank("Who ate?", ["A man is eating food.", "A cat sleeps."])

`import minisbert` needs only NumPy; the SentencePiece and MeCab front ends import their
libraries when a model that needs them is loaded.
"""

from .errors import (ArgumentError, CheckpointError, ConfigError, DiskFullError, DownloadError,
                     EmbeddingInputError, InputFileError,
                     MinisbertError, MissingDependencyError, ModelFileMissing, PairInputError,
                     PromptError,
                     QueueFull, SearchIndexError, TokenizerError, TruncationWarning,
                     UnsupportedModelError)
from .cross_encoder import CrossEncoder
from .model import SentenceModel, SentenceTransformer, load
from .util import cos_sim, semantic_search

__all__ = ["SentenceTransformer", "load", "SentenceModel", "CrossEncoder", "cos_sim",
           "semantic_search", "MinisbertError", "ArgumentError", "ModelFileMissing",
           "CheckpointError", "ConfigError", "UnsupportedModelError", "TokenizerError",
           "MissingDependencyError", "InputFileError", "SearchIndexError", "DownloadError",
           "DiskFullError", "EmbeddingInputError", "PromptError", "PairInputError", "QueueFull",
           "TruncationWarning"]
__version__ = "0.1.0"
