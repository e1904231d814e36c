"""Dense: a fully connected layer on the sentence vector, as sentence-transformers' Dense module.

Some models project the pooled vector before normalizing it: LaBSE (768 -> 768, tanh) and
distiluse-base-multilingual-cased-v2 (768 -> 512, tanh), for example. A Dense module folder
(`2_Dense/`) holds
    config.json   {"in_features": 768, "out_features": 512, "bias": true,
                   "activation_function": "torch.nn.modules.activation.Tanh"}
    model.safetensors or pytorch_model.bin   linear.weight [out, in], linear.bias [out]
and computes act(x Wᵀ + b). With `use_residual` it adds its input (or, when the widths
differ, a bias-free projection of it, `residual.weight`) to the result.

This is its own module rather than part of pooling.py: it has its own folder, config and
weights, and it can sit anywhere in modules.json (`module_input_name: token_embeddings` puts it
on every token vector, before pooling).

Left out: activation functions outside TORCH_ACTIVATIONS. sentence-transformers imports the class the
config names; minisbert runs no code named by a folder and says which names it knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import checkpoint, weights
from .activations import ACTIVATIONS
from .errors import ConfigError, UnsupportedModelError
from .folder import read_json

# The class name at the end of `activation_function` ("torch.nn.modules.activation.Tanh",
# "torch.nn.modules.linear.Identity") -> its name in activations.ACTIVATIONS. Each is torch's
# module built with no arguments: nn.GELU() is the exact erf form.
TORCH_ACTIVATIONS = {"Identity": "linear", "Tanh": "tanh", "ReLU": "relu", "GELU": "gelu",
                     "Sigmoid": "sigmoid", "SiLU": "silu"}
# Which vectors a Dense module may read and write (`module_input_name`/`module_output_name`).
_TARGETS = ("sentence_embedding", "token_embeddings")


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Dense:
    w: np.ndarray                # [in, out], torch's [out, in] transposed once at load
    b: np.ndarray | None         # [out], or None with bias: false
    activation: str              # a key of TORCH_ACTIVATIONS
    use_residual: bool = False   # add the input (projected by `residual` if widths differ)
    residual: np.ndarray | None = None  # [in, out]
    on_tokens: bool = False      # applies to each token vector (before pooling), not the sentence's

    @property
    def in_features(self) -> int:
        return self.w.shape[0]

    @property
    def out_features(self) -> int:
        return self.w.shape[1]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return dense(x, self.w, self.b, ACTIVATIONS[TORCH_ACTIVATIONS[self.activation]],
                     self.residual if self.use_residual else None, self.use_residual)


def dense(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, act,
          residual: np.ndarray | None = None, add_input: bool = False) -> np.ndarray:
    """act(x·W + b) over the last axis, [..., in] -> [..., out]; add_input adds x, or
    x·residual when the widths differ."""
    # Folding [..., in] to 2-D makes one BLAS call (a 3-D @ 2-D product is one per leading index).
    flat = x.reshape(-1, x.shape[-1])  # [n, in]
    y = flat @ w  # [n, in] -> [n, out]
    if b is not None:
        y += b
    y = act(y)
    if add_input:
        y = y + (flat if residual is None else flat @ residual)  # skip connection, [n, out]
    return y.reshape(*x.shape[:-1], w.shape[1])


def load_dense(folder: str | Path, width: int) -> Dense:
    """Read a Dense module folder. `width` is the length of the vectors the module before it
    produces; the module's in_features must equal it."""
    folder = Path(folder)
    config_path = folder / "config.json"
    config = read_json(config_path, required=True)
    try:
        in_features, out_features = config["in_features"], config["out_features"]
    except KeyError as e:
        raise ConfigError(f"{config_path} has no {e.args[0]!r}; a Dense config needs "
                          "in_features and out_features.") from None
    bias = config.get("bias", True)
    use_residual = config.get("use_residual", False)
    for key, value, ok in (("in_features", in_features, _positive_int(in_features)),
                           ("out_features", out_features, _positive_int(out_features)),
                           ("bias", bias, isinstance(bias, bool)),
                           ("use_residual", use_residual, isinstance(use_residual, bool))):
        if not ok:
            raise ConfigError(f"{config_path}: {key} is {value!r}, which is not a valid setting.")
    activation = _activation(config.get("activation_function", "torch.nn.modules.activation.Tanh"),
                             config_path)
    source = config.get("module_input_name", "sentence_embedding")
    target = config.get("module_output_name") or source
    if source != target or source not in _TARGETS:
        raise UnsupportedModelError(
            f"{config_path}: a Dense module from {source!r} to {target!r} is not supported; "
            "minisbert runs Dense on sentence_embedding or token_embeddings, in place.")
    if in_features != width:
        before = "token vectors" if source == "token_embeddings" else "vectors"
        raise ConfigError(f"{config_path}: in_features is {in_features}, but the module before "
                          f"it outputs {before} of width {width}. The modules of this folder do "
                          "not fit together; check modules.json and the Dense config.")
    params = checkpoint.load_dense_params(
        weights.find_weights(folder), in_features, out_features, bias,
        residual=use_residual and in_features != out_features)
    return Dense(params["w"], params["b"], activation, use_residual, params["residual"],
                 on_tokens=source == "token_embeddings")


def _positive_int(value) -> bool:
    return type(value) is int and value > 0


def _activation(name, config_path: Path) -> str:
    known = ", ".join(f"torch.nn.{n}" for n in TORCH_ACTIVATIONS)
    if not isinstance(name, str) or not name.startswith("torch."):
        raise UnsupportedModelError(
            f"{config_path}: activation_function {name!r} is not a torch.nn activation; minisbert "
            f"runs no code a folder names, and implements {known}.")
    short = name.rsplit(".", 1)[-1]
    if short not in TORCH_ACTIVATIONS:
        raise UnsupportedModelError(f"{config_path}: activation_function {name!r} is not "
                                    f"supported; minisbert implements {known}.")
    return short
