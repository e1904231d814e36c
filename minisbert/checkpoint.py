"""From a checkpoint's tensor names to the encoder's parameter tree.

weights.py reads a weight file into {name: float32 array}. This module
  1. renames those tensors to the tree `encoder.py` is called with, by the names of the model's
     family (families.py), after removing the prefix task checkpoints add ("bert.", ...) and
     skipping the tensors the family ignores (pooler, task heads, position_ids buffers);
  2. checks that exactly the tensors the config implies are there, each with its shape
     (`check_tensors`, also used for Dense modules), and refuses anything else, naming it;
  3. for a cross-encoder, does the same for the classification head's tensors (`head_shapes`),
     which a sentence encoder skips;
  4. transposes each linear weight once (torch stores them [out, in]; we multiply x @ W with W
     [in, out]), as a view, so no weight is copied.

Left out: tensors of blocks no family uses (cross attention, adapters) and writing checkpoints.
"""

from __future__ import annotations

import os
import re

import numpy as np

from .errors import CheckpointError
from .families import FAMILIES, EncoderConfig, HeadConfig, Part
from .weights import read_tensors

# the paths that are norms (the last four: the decoder embedders')
_LAYER_NORMS = ("embeddings.ln", "ln_attn", "ln_ffn", "final_norm", "attn.q_norm", "attn.k_norm",
                "ln_attn_out", "ln_ffn_out")


def _canonical(name: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    # TF-era checkpoints call LayerNorm's scale and shift gamma and beta.
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight",
                  re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))


Shapes = dict[str, tuple[int, ...]]  # a parameter's path or a tensor's name -> its shape


def tree_shapes(cfg: EncoderConfig) -> tuple[Shapes, Shapes]:
    """The shape of every parameter, by its path in the tree, as stored in the checkpoint
    (torch's Linear: [out, in]; a LayerNorm: [d]): (outside the layers, in each layer; see
    `layer_paths` for a first layer without some of them)."""
    d, ff = cfg.hidden_size, cfg.intermediate_size
    q, kv = cfg.num_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim  # d and d in encoders
    blocks = cfg.blocks
    outside = {"embeddings.word": (cfg.vocab_size, d)}
    if blocks.layer == "encoder":  # a decoder's token vectors go to its first layer as they are
        outside["embeddings.ln"] = (d,)
    if blocks.positions == "absolute":  # rotary positions have no table
        outside["embeddings.position"] = (cfg.max_position_embeddings, d)
    if cfg.type_vocab_size:
        outside["embeddings.token_type"] = (cfg.type_vocab_size, d)
    if cfg.relative_attention_buckets:
        outside["relative_attention_bias"] = (cfg.relative_attention_buckets, cfg.num_heads)
    if blocks.norm_placement == "pre":  # pre-LN: one norm after the last layer
        outside["final_norm"] = (d,)
    layer = {"attn.q": (q, d), "attn.k": (kv, d), "attn.v": (kv, d), "attn.out": (d, q),
             "ln_attn": (d,), "ffn.up": (ff, d), "ffn.down": (d, ff), "ln_ffn": (d,)}
    if blocks.feed_forward == "gated":
        layer["ffn.gate"] = (ff, d)
    if blocks.layer == "decoder":  # every query and key head RMS-normalized
        layer["attn.q_norm"] = layer["attn.k_norm"] = (cfg.head_dim,)
    if blocks.output_norms:  # Gemma: each sublayer's output normalized before it is added
        layer["ln_attn_out"] = layer["ln_ffn_out"] = (d,)
    return outside, layer


def layer_paths(cfg: EncoderConfig, i: int) -> Shapes:
    """The parameters of layer i: every layer's, less the attention norm in a first layer
    that has none (ModernBERT)."""
    _, layer = tree_shapes(cfg)
    if i == 0 and not cfg.blocks.first_attention_norm:
        layer = {path: shape for path, shape in layer.items() if path != "ln_attn"}
    return layer


def has_bias(cfg: EncoderConfig, path: str) -> bool:
    """Does the parameter at `path` (a linear or a norm) have a bias in this model?"""
    if path in _LAYER_NORMS:
        return cfg.norm_bias
    if path.startswith("attn."):
        return cfg.attention_bias
    if path in ("ffn.up", "ffn.gate"):
        return cfg.up_bias
    return cfg.down_bias if path == "ffn.down" else True


def _tensors_of(name: str | Part, shape: tuple[int, ...], bias: bool) -> Shapes:
    """The checkpoint's tensors of one parameter: itself (an embedding table), or a linear's /
    norm's weight and, if it has one, bias. A Part is `of` parameters stacked along the rows
    of one tensor."""
    if isinstance(name, Part):
        name, shape = name.name, (name.of * shape[0], *shape[1:])
    if name.endswith(".weight"):
        return {name: shape}
    return {name + ".weight": shape, **({name + ".bias": shape[:1]} if bias else {})}


def _name(names: dict, path: str, i: int = 0) -> str | Part:
    name = names[path]
    if isinstance(name, Part):
        return name._replace(name=name.name.format(i=i))
    return name.format(i=i)


def expected_shapes(cfg: EncoderConfig) -> Shapes:
    """Every tensor the encoder needs, by its checkpoint name, with its stored shape."""
    names = FAMILIES[cfg.architecture].names
    outside, _ = tree_shapes(cfg)
    shapes = {}
    for path, shape in outside.items():
        shapes.update(_tensors_of(_name(names, path), shape, has_bias(cfg, path)))
    for i in range(cfg.num_layers):
        for path, shape in layer_paths(cfg, i).items():
            shapes.update(_tensors_of(_name(names, path, i), shape, has_bias(cfg, path)))
    return shapes


def head_shapes(cfg: EncoderConfig, head: HeadConfig) -> Shapes:
    """The classification head's tensors, by checkpoint name (prefix removed), as stored."""
    d, names = cfg.hidden_size, FAMILIES[cfg.architecture].head.names
    shapes = {names["dense"] + ".weight": (d, d), names["out"] + ".weight": (head.num_labels, d),
              names["out"] + ".bias": (head.num_labels,)}
    if head.dense_bias:
        shapes[names["dense"] + ".bias"] = (d,)
    if head.norm:
        shapes[names["norm"] + ".weight"] = (d,)
        if head.norm_bias:
            shapes[names["norm"] + ".bias"] = (d,)
    return shapes


def _listed(names: list[str], most: int = 5) -> str:
    return ", ".join(names[:most]) + (" …" if len(names) > most else "")


def check_tensors(path: str | os.PathLike, tensors: dict[str, np.ndarray], want: Shapes,
                  source: str, kind: str) -> None:
    """Refuse a weight file unless it holds exactly the tensors in `want`, each of its shape:
    the error names the missing, the unexpected, or the first misshapen tensor. `source` says
    what implies `want` (the config); `kind` what the weights belong to ("model", "module")."""
    missing = sorted(set(want) - set(tensors))
    unexpected = sorted(set(tensors) - set(want))
    if missing or unexpected:
        parts = [f"{what} {len(names)} tensor(s): {_listed(names)}"
                 for what, names in (("missing", missing), ("unexpected", unexpected)) if names]
        raise CheckpointError(f"{path} does not match {source}: {'; '.join(parts)}. Check that "
                              f"config.json and the weights come from the same {kind}.")
    for name, shape in want.items():
        if tensors[name].shape != shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {list(tensors[name].shape)} but {source} "
                f"implies {list(shape)}. Check that config.json and the weights belong together.")


def sinusoidal_positions(rows: int, d: int, block: int = 1024) -> np.ndarray:
    """The fixed position table of "Attention Is All You Need", as DistilBERT makes it when
    sinusoidal_pos_embds is set: row p, column j is sin (even j) or cos (odd j) of
    p / 10000^(2·(j // 2) / d), computed in float64 and stored as float32, `block` rows at a
    time (so the float64 work costs [block, d], not [rows, d])."""
    table = np.empty((rows, d), dtype=np.float32)
    frequency = np.power(10000, 2 * (np.arange(d) // 2) / d)  # [d]
    for start in range(0, rows, block):
        angle = np.arange(start, min(start + block, rows))[:, None] / frequency  # [block, d]
        table[start:start + block, 0::2] = np.sin(angle[:, 0::2])
        table[start:start + block, 1::2] = np.cos(angle[:, 1::2])
    return table


# The most numbers a computed sinusoidal table may hold (256 MiB of float32): DistilBERT's is
# 512 x 768 = 393,216. The table is made from two numbers of config.json, not read from the
# weights, so without a bound a small file could ask for gigabytes.
MAX_SINUSOIDAL_NUMBERS = 2**26


def _check_layers(path, tensors: dict, cfg: EncoderConfig) -> None:
    """Refuse a config that asks for more layers than the weights hold, before the expected
    shapes of all of them are listed (num_hidden_layers 10**7 would list 160 million): the
    message counts the missing tensors and names the first missing layer's."""
    family = FAMILIES[cfg.architecture]
    template = next(n if isinstance(n, str) else n.name  # a tensor of each layer
                    for n in family.names.values() if "{i}" in (n if isinstance(n, str) else n.name))
    before, after = template.split("{i}")  # "encoder.layer.", ".attention.self.query"
    layer_of = re.compile(re.escape(before) + r"(\d+)" + re.escape(after) + r"\.")
    held = {int(m.group(1)) for name in tensors if (m := layer_of.match(name))}
    if cfg.num_layers <= len(held):  # check_tensors names any tensor missing or unexpected
        return
    first = next(i for i in range(cfg.num_layers) if i not in held)  # at most len(held) steps
    absent = cfg.num_layers - sum(i < cfg.num_layers for i in held)  # whole layers missing
    names = list(dict.fromkeys(
        n for path, shape in layer_paths(cfg, first).items()
        for n in _tensors_of(_name(family.names, path, first), shape, has_bias(cfg, path))))
    source = family.config["num_layers"]
    key = source[0] if isinstance(source, tuple) else "the number of layers"
    raise CheckpointError(
        f"{path} does not match config.json ({key} {cfg.num_layers}; the weights hold "
        f"{len(held)} layer(s)): missing {len(names) * absent} tensor(s): "
        f"{_listed(names)}. Check that config.json and the weights come from the same model.")


def load_params(path: str | os.PathLike, cfg: EncoderConfig,
                head: HeadConfig | None = None, keep_bf16: bool = False) -> dict:
    """Read the weight file and arrange it as the parameter tree of `encoder.encode_tokens`;
    with `head` (a cross-encoder), params["head"] holds the classification head's
    (`encoder.classifier_head`'s) parameters too.

    keep_bf16: bfloat16 tensors stay in the memory-mapped file as their 16-bit patterns
    (uint16), for encoder.decode_tokens, which widens one layer at a time; False widens every
    tensor here (what the encoders and the textbook need)."""
    family = FAMILIES[cfg.architecture]
    names, ignored = family.names, re.compile("|".join(family.ignored))
    wanted = head_shapes(cfg, head) if head is not None else {}
    tensors = {}
    for name, array in read_tensors(path, keep_bf16).items():
        name = _canonical(name, family.prefixes)
        if name in wanted or not ignored.search(name):
            tensors[name] = array
    _check_layers(path, tensors, cfg)
    want = {**expected_shapes(cfg), **wanted}
    source = (f"config.json ({cfg.architecture}, {cfg.num_layers} layers"
              + (f", a head of {head.num_labels} label(s))" if head else ")"))
    position = names.get("embeddings.position")
    if cfg.sinusoidal_positions and position not in tensors:
        # DistilBERT with sinusoidal_pos_embds: a checkpoint saved without the fixed table. One
        # saved with it is used as saved, as transformers does. Everything else is checked
        # first, so the table's width is the weights' own; its length is bounded.
        check_tensors(path, tensors, {n: s for n, s in want.items() if n != position}, source,
                      "model")
        rows, d = cfg.max_position_embeddings, cfg.hidden_size
        if rows * d > MAX_SINUSOIDAL_NUMBERS:
            raise CheckpointError(
                f"{path}: config.json asks for a sinusoidal position table of "
                f"max_position_embeddings {rows} x dim {d} = {rows * d} numbers; minisbert makes "
                f"at most {MAX_SINUSOIDAL_NUMBERS} (DistilBERT's is 512 x 768). Fix config.json.")
        tensors[position] = sinusoidal_positions(rows, d)
    check_tensors(path, tensors, want, source, "model")

    def param(path: str, i: int = 0):
        name = _name(names, path, i)
        rows = slice(None)
        if isinstance(name, Part):  # this parameter's block of rows of a fused tensor
            out = tensors[name.name + ".weight"].shape[0] // name.of
            name, rows = name.name, slice(name.index * out, (name.index + 1) * out)
        if name.endswith(".weight"):
            return tensors[name]  # an embedding table: stays memory-mapped, rows read on use
        bias = tensors[name + ".bias"][rows] if has_bias(cfg, path) else None
        if path in _LAYER_NORMS:
            return {"g": tensors[name + ".weight"], "b": bias}
        # Transposed view, no copy: x @ w.T runs as one BLAS call with a transposed operand.
        # A fused tensor's block is a slice of its columns, still a view BLAS reads in place.
        return {"w": tensors[name + ".weight"].T[:, rows], "b": bias}

    def tree(paths, i: int = 0) -> dict:  # {"attn.q": ...} -> {"attn": {"q": ...}}
        out = {}
        for path in paths:
            *parents, leaf = path.split(".")
            node = out
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = param(path, i)
        return out

    outside, _ = tree_shapes(cfg)
    params = tree(outside)
    params["layers"] = []
    for i in range(cfg.num_layers):
        layer = tree(layer_paths(cfg, i), i)
        layer.setdefault("ln_attn", None)  # a first layer without an attention norm
        params["layers"].append(layer)
    if head is not None:
        params["head"] = _head_params(tensors, family.head.names, head)
    return params


def _head_params(tensors: dict, names: dict[str, str], head: HeadConfig) -> dict:
    """The head's tree: {"dense": {w, b}, "out": {w, b}} (+ "norm": {g, b}). A layer stored
    without a bias (ModernBERT's) gets zeros, so the head is one function for every family."""
    def bias(name: str, width: int) -> np.ndarray:
        return tensors.get(name + ".bias", np.zeros(width, dtype=np.float32))

    params = {part: {"w": tensors[names[part] + ".weight"].T,  # [in, out], a transposed view
                     "b": bias(names[part], tensors[names[part] + ".weight"].shape[0])}
              for part in ("dense", "out")}
    if head.norm:
        weight = tensors[names["norm"] + ".weight"]
        params["norm"] = {"g": weight, "b": bias(names["norm"], weight.shape[0])}
    return params


# ---------------------------------------------------------------------------- Dense modules

def load_dense_params(path: str | os.PathLike, in_features: int, out_features: int, bias: bool,
                      residual: bool) -> dict:
    """A sentence-transformers Dense module's weights, `linear.weight` [out, in] (transposed
    here to [in, out]) and `linear.bias` [out]; with use_residual and in != out also
    `residual.weight`, the projection of the input that is added to the output."""
    tensors = read_tensors(path)
    want = {"linear.weight": (out_features, in_features)}
    if bias:
        want["linear.bias"] = (out_features,)
    if residual:
        want["residual.weight"] = (out_features, in_features)
    check_tensors(path, tensors, want, f"the Dense config.json beside it (in_features="
                  f"{in_features}, out_features={out_features}, bias={bias}, "
                  f"use_residual={residual})", "module")
    return {"w": tensors["linear.weight"].T,  # [in, out], a transposed view
            "b": tensors["linear.bias"] if bias else None,
            "residual": tensors["residual.weight"].T if residual else None}
