"""The exceptions minisbert raises, and its one warning. Each message names the file or input at
fault and what to do.

The exceptions all derive from `MinisbertError`, and also from the built-in exception a caller
would naturally catch (`FileNotFoundError`, `ValueError`, `ImportError`, `OSError`), so existing `except`
clauses still work.
"""


class MinisbertError(Exception):
    """Base class of every error minisbert raises on purpose."""


class ModelFileMissing(MinisbertError, FileNotFoundError):
    """A model folder, or a file the folder needs, does not exist."""


class CheckpointError(MinisbertError, ValueError):
    """model.safetensors is unreadable, truncated, or does not match config.json."""


class ConfigError(MinisbertError, ValueError):
    """A JSON file of the model folder (config.json, modules.json, ...) is not valid JSON, is not
    the JSON object or list it should be, or lacks or misstates a setting the model needs."""


class UnsupportedModelError(MinisbertError, ValueError):
    """The folder asks for an architecture, pooling or activation minisbert does not implement."""


class ArgumentError(MinisbertError, ValueError):
    """An argument minisbert cannot honour: a value out of range, or an option of
    sentence-transformers' API that minisbert does not implement (a GPU device, remote code,
    another backend); the message names it and says what to do instead."""


class PromptError(MinisbertError, ValueError):
    """encode was asked for a prompt name the folder's config_sentence_transformers.json does
    not define; the message lists the names it does."""


class PairInputError(MinisbertError, ValueError):
    """A cross-encoder was given something other than (text, text) pairs, or rank() a query
    or documents that are not strings."""


class TokenizerError(MinisbertError, ValueError):
    """A tokenizer file is missing its pieces or cannot be read."""


class MissingDependencyError(MinisbertError, ImportError):
    """An optional dependency (sentencepiece, fugashi, a MeCab dictionary) is not installed."""


class InputFileError(MinisbertError, ValueError):
    """The command line's input text file cannot be decoded, or holds no text."""


class EmbeddingInputError(MinisbertError, ValueError):
    """Vectors given to a function of minisbert.util cannot be used as asked: shapes that do
    not match, an unknown precision, integers to quantize, ranges from one vector alone."""


class SearchIndexError(MinisbertError, ValueError):
    """An index folder is unreadable, or was made with another model than the one given."""


class DownloadError(MinisbertError, OSError):
    """The hub could not be reached, or did not have a file the model needs."""


class DiskFullError(MinisbertError, OSError):
    """An index could not be written: no space left on the disk, or a file size limit reached.
    What was written up to the last checkpoint is kept, so the same command resumes."""


class QueueFull(MinisbertError, RuntimeError):
    """The server's queue holds as many texts as it may take (or it is shutting down): the
    request is refused at once, with HTTP 503, so the client can try again shortly."""


class TruncationWarning(UserWarning):
    """A text was longer than max_seq_length, so its embedding ignores the tokens past it.
    Silence it with `warnings.filterwarnings("ignore", category=TruncationWarning)`."""

