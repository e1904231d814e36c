"""minisbert: Sentence-BERT inference in NumPy.

    import minisbert
    model = minisbert.load("weights/all-MiniLM-L6-v2")
    vectors = model.encode(["A man is eating food.", "Someone is having a meal."])

`import minisbert` needs only NumPy; the SentencePiece and MeCab front ends import their
libraries when a model that needs them is loaded.
"""

from .errors import (CheckpointError, ConfigError, DiskFullError, DownloadError,
                     EmbeddingInputError, InputFileError,
                     MinisbertError, MissingDependencyError, ModelFileMissing, PromptError,
                     QueueFull, SearchIndexError, TokenizerError, TruncationWarning,
                     UnsupportedModelError)
from .model import SentenceModel, load
from .util import cos_sim, semantic_search

__all__ = ["load", "SentenceModel", "cos_sim", "semantic_search", "MinisbertError",
           "ModelFileMissing", "CheckpointError", "ConfigError", "UnsupportedModelError",
           "TokenizerError", "MissingDependencyError", "InputFileError", "SearchIndexError",
           "DownloadError", "DiskFullError", "EmbeddingInputError", "PromptError", "QueueFull",
           "TruncationWarning"]
__version__ = "0.1.0"
