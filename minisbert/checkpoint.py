"""Reading a model's weight files into the encoder's parameter tree.

This is the one module that knows checkpoint tensor names. It
  1. parses the safetensors container itself (no torch, no extra library) and memory-maps it,
     so a 768 MB embedding table costs no RAM until rows of it are read; reads pytorch_model.bin
     the same way through torch_checkpoint.py, and checkpoints split into shards;
  2. renames HuggingFace tensors to the tree `encoder.py` is called with, by one table per
     family (BERT's names, which XLM-R and RoBERTa share; MPNet's; DistilBERT's), transposing
     the linear weights once (torch stores them [out, in]; we multiply x @ W with W [in, out]);
  3. checks every shape against config.json and refuses missing or unexpected tensors.

The safetensors format: 8 bytes little-endian header length N, N bytes of JSON mapping each
tensor name to {dtype, shape, data_offsets}, then the raw little-endian C-order data.
"""

from __future__ import annotations

import json
import mmap
import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from . import torch_checkpoint
from .encoder import EncoderConfig
from .errors import CheckpointError, ModelFileMissing
from .folder import check_not_lfs_pointer, read_json

# safetensors dtype -> how its bytes are viewed. BF16 has no NumPy dtype: read as uint16.
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
           "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict, int]:
    """A .safetensors file's header, checked: (tensor name -> {dtype, shape, data_offsets},
    the byte where the data starts). `__metadata__` is left out. The data is not read."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileMissing(f"{path}: no such file. Download it with the rest of the model "
                               "folder.")
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = f.read(64)
        check_not_lfs_pointer(path, start, CheckpointError)
        if size < 8:
            raise CheckpointError(f"{path} is {size} bytes: too short to be a safetensors file. "
                                  "It is truncated or empty; download it again.")
        header_len = int.from_bytes(start[:8], "little")
        if 8 + header_len > size:
            raise CheckpointError(
                f"{path}: header says it is {header_len} bytes long but the file has {size} bytes. "
                "The file is truncated or not a safetensors file; download it again.")
        f.seek(8)
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: the header is not valid JSON ({e}). The file is "
                                  "corrupt or not a safetensors file; download it again.") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header is not a JSON object; download the file again.")
    header.pop("__metadata__", None)
    return header, 8 + header_len


def read_safetensors(path: str | os.PathLike, keep_bf16: bool = False) -> dict[str, np.ndarray]:
    """Map every tensor of a .safetensors file to a read-only float32 array.

    F32 tensors are zero-copy views into the memory-mapped file; F16/BF16/F64 are converted
    to float32 (a copy), since every computation here is float32. keep_bf16: BF16 tensors are
    left in the file too, as uint16 views of their bits (encoder.widen_bf16 converts them).
    """
    path = Path(path)
    header, data_start = read_safetensors_header(path)
    data_len = path.stat().st_size - data_start
    buffer = _map(path) if data_len else b""
    tensors = {}
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            # Sizes and offsets must be whole numbers, or the arithmetic below fails obscurely.
            well_formed = isinstance(dtype, str) and all(
                type(n) is int and n >= 0 for n in [*shape, begin, end])
        except (KeyError, TypeError, ValueError):
            well_formed = False
        if not well_formed:
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed header entry {info!r}; "
                                  "the file is corrupt, download it again.")
        if dtype not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype}, which minisbert "
                                  "cannot read (it reads F32, F16, BF16, F64 and integers).")
        item = np.dtype(_DTYPES[dtype])
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= begin <= end <= data_len) or end - begin != count * item.itemsize:
            raise CheckpointError(
                f"{path}: tensor {name!r} needs bytes {begin}..{end} ({dtype} {shape}) but the file "
                f"holds {data_len} bytes of data. The file is truncated or corrupt; download it again.")
        raw = np.frombuffer(buffer, dtype=item, count=count, offset=data_start + begin)
        keep = keep_bf16 and dtype == "BF16"
        tensors[name] = (raw if keep else _to_float32(raw, dtype)).reshape(shape)
    return tensors


def _map(path: Path):
    # A private read-only mapping: pages are read from disk on first touch and can be dropped
    # again by the OS, so a large table costs RAM only for the rows actually gathered.
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "F32":
        return raw
    if dtype == "BF16":
        # bfloat16 is the top half of a float32: widen to 32 bits and shift into place.
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype in ("F16", "F64"):
        return raw.astype(np.float32)
    return raw  # integer tensors (position_ids buffers) are never used as weights


# ---------------------------------------------------------------------------- other containers

# The weight files a folder may hold, in the order transformers looks for them.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json",
                "pytorch_model.bin", "pytorch_model.bin.index.json")


def find_weights(folder: str | os.PathLike) -> Path:
    """The weight file of a model (or module) folder: the first of WEIGHT_FILES it holds."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise ModelFileMissing(f"{folder} holds no weights: none of {', '.join(WEIGHT_FILES)}. "
                           "Download the complete folder.")


def read_weight_map(index_path: str | os.PathLike,
                    error: type[Exception] = CheckpointError) -> dict[str, list[str]]:
    """A sharded checkpoint's index (model.safetensors.index.json): shard file -> the tensors
    it holds. Shards are plain file names beside the index; an index naming anything else
    (a path, "..") raises `error`, since the downloader turns these names into file paths."""
    index_path = Path(index_path)
    index = read_json(index_path, required=True, error=error)
    weight_map = index.get("weight_map")
    if not (isinstance(weight_map, dict) and weight_map
            and all(isinstance(v, str) for v in weight_map.values())):
        raise error(f"{index_path} has no weight_map {{tensor name: shard file}}; "
                    "download it again.")
    by_shard: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(name)
    for shard, names in by_shard.items():
        if PurePosixPath(shard).name != shard or PureWindowsPath(shard).name != shard \
                or shard in ("", ".", ".."):  # a file beside the index, no path
            raise error(f"{index_path} puts {names[0]} in {shard!r}, which is not a file name "
                        "in the same folder; refusing the index.")
    return by_shard


def read_tensors(path: str | os.PathLike, keep_bf16: bool = False) -> dict[str, np.ndarray]:
    """Every tensor of a weight file, as float32 (integers as they are), whatever its container:
    .safetensors, torch's pytorch_model.bin, or the .index.json of a sharded checkpoint.
    keep_bf16: safetensors' BF16 tensors as uint16 bits, not widened (see read_safetensors)."""
    path = Path(path)
    if path.name.endswith(".index.json"):
        return read_sharded(path, keep_bf16)
    if path.suffix == ".safetensors":
        return read_safetensors(path, keep_bf16)
    return read_pytorch_bin(path)


def read_pytorch_bin(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a torch.save'd state dict, as float32, without torch and without running
    anything the file asks for (see torch_checkpoint.py)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileMissing(f"{path}: no such file. Download the complete model folder.")
    with open(path, "rb") as f:
        check_not_lfs_pointer(path, f.read(64), CheckpointError)
    return {name: _to_float32(raw, dtype)
            for name, (dtype, raw) in torch_checkpoint.read_torch_checkpoint(path).items()}


def read_sharded(index_path: str | os.PathLike, keep_bf16: bool = False) -> dict[str, np.ndarray]:
    """A checkpoint split into shards: model.safetensors.index.json's `weight_map` says which
    shard file (beside the index) holds each tensor; the shards are read and merged."""
    index_path = Path(index_path)
    tensors = {}
    for shard, names in read_weight_map(index_path).items():
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise ModelFileMissing(f"{shard_path}: no such file, but {index_path.name} says it "
                                   f"holds {len(names)} tensor(s) ({names[0]}, ...). Download "
                                   "every shard of the checkpoint.")
        if shard_path.name.endswith(".index.json"):
            raise CheckpointError(f"{index_path} names another index, {shard}, as a shard.")
        found = read_tensors(shard_path, keep_bf16)
        missing = [n for n in names if n not in found]
        if missing:
            raise CheckpointError(
                f"{shard_path} lacks {len(missing)} tensor(s) that {index_path.name} places in it: "
                f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}. The shard and the "
                "index come from different versions; download both again.")
        tensors.update((n, found[n]) for n in names)
    return tensors


# ---------------------------------------------------------------------------- name mapping

# Each family's tensor names, one table per family: the path of a parameter in the tree that
# encoder.encode_tokens reads -> the checkpoint's name for it; "{i}" is the layer number. A name
# ending in ".weight" is one tensor (an embedding table); any other is the prefix of a linear
# layer or a LayerNorm, whose ".weight" and ".bias" follow it.
_BERT_NAMES = {
    "embeddings.word": "embeddings.word_embeddings.weight",
    "embeddings.position": "embeddings.position_embeddings.weight",
    "embeddings.token_type": "embeddings.token_type_embeddings.weight",
    "embeddings.ln": "embeddings.LayerNorm",
    "attn.q": "encoder.layer.{i}.attention.self.query",
    "attn.k": "encoder.layer.{i}.attention.self.key",
    "attn.v": "encoder.layer.{i}.attention.self.value",
    "attn.out": "encoder.layer.{i}.attention.output.dense",
    "ln_attn": "encoder.layer.{i}.attention.output.LayerNorm",
    "ffn.up": "encoder.layer.{i}.intermediate.dense",
    "ffn.down": "encoder.layer.{i}.output.dense",
    "ln_ffn": "encoder.layer.{i}.output.LayerNorm",
}
_MPNET_NAMES = {
    "embeddings.word": "embeddings.word_embeddings.weight",
    "embeddings.position": "embeddings.position_embeddings.weight",
    "embeddings.ln": "embeddings.LayerNorm",
    "attn.q": "encoder.layer.{i}.attention.attn.q",
    "attn.k": "encoder.layer.{i}.attention.attn.k",
    "attn.v": "encoder.layer.{i}.attention.attn.v",
    "attn.out": "encoder.layer.{i}.attention.attn.o",
    "ln_attn": "encoder.layer.{i}.attention.LayerNorm",
    "ffn.up": "encoder.layer.{i}.intermediate.dense",
    "ffn.down": "encoder.layer.{i}.output.dense",
    "ln_ffn": "encoder.layer.{i}.output.LayerNorm",
    # one [buckets, heads] table, shared by every layer
    "relative_attention_bias": "encoder.relative_attention_bias.weight",
}
_DISTILBERT_NAMES = {
    "embeddings.word": "embeddings.word_embeddings.weight",
    "embeddings.position": "embeddings.position_embeddings.weight",
    "embeddings.ln": "embeddings.LayerNorm",
    "attn.q": "transformer.layer.{i}.attention.q_lin",
    "attn.k": "transformer.layer.{i}.attention.k_lin",
    "attn.v": "transformer.layer.{i}.attention.v_lin",
    "attn.out": "transformer.layer.{i}.attention.out_lin",
    "ln_attn": "transformer.layer.{i}.sa_layer_norm",
    "ffn.up": "transformer.layer.{i}.ffn.lin1",
    "ffn.down": "transformer.layer.{i}.ffn.lin2",
    "ln_ffn": "transformer.layer.{i}.output_layer_norm",
}
_LAYER_NORMS = ("embeddings.ln", "ln_attn", "ln_ffn")  # the paths that are LayerNorms
# model_type -> (its table, the prefix task checkpoints put before the encoder's names;
# sentence-transformers checkpoints have none). RoBERTa and XLM-R use BERT's names.
NAMES = {
    "bert": (_BERT_NAMES, ("bert.",)),
    "xlm-roberta": (_BERT_NAMES, ("roberta.", "xlm_roberta.")),
    "roberta": (_BERT_NAMES, ("roberta.",)),
    "mpnet": (_MPNET_NAMES, ("mpnet.",)),
    "distilbert": (_DISTILBERT_NAMES, ("distilbert.",)),
}
# Tensors that exist in checkpoints but are not part of a sentence encoder's forward pass:
# buffers of position numbers, pooler and task heads (DistilBERT's masked-LM head is vocab_*).
_IGNORED = re.compile(r"(^|\.)position_ids$|^cls\.|^lm_head\.|^pooler\.|^classifier\."
                      r"|^vocab_(transform|layer_norm|projector)\.")


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
    (torch's Linear: [out, in]; a LayerNorm: [d]): (outside the layers, in each layer)."""
    d, ff = cfg.hidden_size, cfg.intermediate_size
    outside = {"embeddings.word": (cfg.vocab_size, d),
               "embeddings.position": (cfg.max_position_embeddings, d),
               "embeddings.ln": (d,)}
    if cfg.type_vocab_size:
        outside["embeddings.token_type"] = (cfg.type_vocab_size, d)
    if cfg.relative_attention_buckets:
        outside["relative_attention_bias"] = (cfg.relative_attention_buckets, cfg.num_heads)
    layer = {"attn.q": (d, d), "attn.k": (d, d), "attn.v": (d, d), "attn.out": (d, d),
             "ln_attn": (d,), "ffn.up": (ff, d), "ffn.down": (d, ff), "ln_ffn": (d,)}
    return outside, layer


def _tensors_of(name: str, shape: tuple[int, ...]) -> Shapes:
    """The checkpoint's tensors of one parameter: itself, or a linear's / LayerNorm's two."""
    if name.endswith(".weight"):
        return {name: shape}
    return {name + ".weight": shape, name + ".bias": shape[:1]}


def expected_shapes(cfg: EncoderConfig) -> Shapes:
    """Every tensor the encoder needs, by its checkpoint name, with its stored shape."""
    names, _ = NAMES[cfg.architecture]
    outside, layer = tree_shapes(cfg)
    shapes = {}
    for path, shape in outside.items():
        shapes.update(_tensors_of(names[path], shape))
    for i in range(cfg.num_layers):
        for path, shape in layer.items():
            shapes.update(_tensors_of(names[path].format(i=i), shape))
    return shapes


def sinusoidal_positions(rows: int, d: int) -> np.ndarray:
    """The fixed position table of "Attention Is All You Need", as DistilBERT makes it when
    sinusoidal_pos_embds is set: row p, column j is sin (even j) or cos (odd j) of
    p / 10000^(2·(j // 2) / d), computed in float64 and stored as float32."""
    angle = np.arange(rows)[:, None] / np.power(10000, 2 * (np.arange(d) // 2) / d)  # [rows, d]
    table = np.empty((rows, d), dtype=np.float64)
    table[:, 0::2] = np.sin(angle[:, 0::2])
    table[:, 1::2] = np.cos(angle[:, 1::2])
    return table.astype(np.float32)


def load_params(path: str | os.PathLike, cfg: EncoderConfig) -> dict:
    """Read the weight file and arrange it as the parameter tree of `encoder.encode_tokens`."""
    names, prefixes = NAMES[cfg.architecture]
    raw = read_tensors(path)
    tensors = {}
    for name, array in raw.items():
        name = _canonical(name, prefixes)
        if not _IGNORED.search(name):
            tensors[name] = array
    position = names["embeddings.position"]
    if cfg.sinusoidal_positions and position not in tensors:
        # DistilBERT with sinusoidal_pos_embds: a checkpoint saved without the fixed table. One
        # saved with it is used as saved, as transformers does.
        tensors[position] = sinusoidal_positions(cfg.max_position_embeddings, cfg.hidden_size)

    want = expected_shapes(cfg)
    missing = sorted(set(want) - set(tensors))
    unexpected = sorted(set(tensors) - set(want))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:5])}"
                         + (" …" if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s): {', '.join(unexpected[:5])}"
                         + (" …" if len(unexpected) > 5 else ""))
        raise CheckpointError(f"{path} does not match config.json ({cfg.architecture}, "
                              f"{cfg.num_layers} layers): " + "; ".join(parts)
                              + ". Check that config.json and the weights come from the same "
                              "model.")
    for name, shape in want.items():
        if tensors[name].shape != shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {list(tensors[name].shape)} but config.json "
                f"implies {list(shape)}. Check that config.json and the weights belong together.")

    def param(path: str, i: int = 0):
        name = names[path].format(i=i)
        if name.endswith(".weight"):
            return tensors[name]  # an embedding table: stays memory-mapped, rows read on use
        if path in _LAYER_NORMS:
            return {"g": tensors[name + ".weight"], "b": tensors[name + ".bias"]}
        # Transposed view, no copy: x @ w.T runs as one BLAS call with a transposed operand.
        return {"w": tensors[name + ".weight"].T, "b": tensors[name + ".bias"]}

    def tree(paths, i: int = 0) -> dict:  # {"attn.q": ...} -> {"attn": {"q": ...}}
        out = {}
        for path in paths:
            *parents, leaf = path.split(".")
            node = out
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = param(path, i)
        return out

    outside, layer = tree_shapes(cfg)
    params = tree(outside)
    params["layers"] = [tree(layer, i) for i in range(cfg.num_layers)]
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
    parts = []
    if missing := sorted(set(want) - set(tensors)):
        parts.append(f"missing {', '.join(missing)}")
    if unexpected := sorted(set(tensors) - set(want)):
        parts.append(f"unexpected {', '.join(unexpected)}")
    if parts:
        raise CheckpointError(
            f"{path} does not match the Dense config.json beside it (bias={bias}, "
            f"use_residual={residual}): {'; '.join(parts)}. Check that config.json and the "
            "weights come from the same module.")
    for name, shape in want.items():
        if tensors[name].shape != shape:
            raise CheckpointError(
                f"{path}: {name} has shape {list(tensors[name].shape)} but config.json "
                f"(in_features={in_features}, out_features={out_features}) implies {list(shape)}. "
                "Check that config.json and the weights belong together.")
    return {"w": tensors["linear.weight"].T,  # [in, out], a transposed view
            "b": tensors["linear.bias"] if bias else None,
            "residual": tensors["residual.weight"].T if residual else None}


# ---------------------------------------------------------------------------- decoder embedders

# Qwen3 and Gemma 3 as transformers' save_pretrained writes Qwen3Model / Gemma3TextModel (the
# names of a sentence-transformers folder); their ForCausalLM checkpoints put "model." first.
# Beware the one name that means two things: Qwen3's post_attention_layernorm normalizes the
# feed-forward's INPUT, Gemma's normalizes the attention's OUTPUT (its feed-forward input is
# pre_feedforward_layernorm). Every norm is RMSNorm, a weight without a bias; no linear layer
# has a bias.
_DECODER_LAYER = {
    "ln_attn": "layers.{i}.input_layernorm",
    "attn.q": "layers.{i}.self_attn.q_proj",
    "attn.k": "layers.{i}.self_attn.k_proj",
    "attn.v": "layers.{i}.self_attn.v_proj",
    "attn.out": "layers.{i}.self_attn.o_proj",
    "attn.q_norm": "layers.{i}.self_attn.q_norm",
    "attn.k_norm": "layers.{i}.self_attn.k_norm",
    "ffn.gate": "layers.{i}.mlp.gate_proj",
    "ffn.up": "layers.{i}.mlp.up_proj",
    "ffn.down": "layers.{i}.mlp.down_proj",
}
DECODER_NAMES = {
    "qwen3": {**_DECODER_LAYER, "ln_ffn": "layers.{i}.post_attention_layernorm"},
    "gemma3_text": {**_DECODER_LAYER,
                    "ln_attn_out": "layers.{i}.post_attention_layernorm",
                    "ln_ffn": "layers.{i}.pre_feedforward_layernorm",
                    "ln_ffn_out": "layers.{i}.post_feedforward_layernorm"},
}
_DECODER_OUTSIDE = {"embeddings.word": "embed_tokens", "final_norm": "norm"}
_DECODER_NORMS = ("ln_attn", "ln_attn_out", "ln_ffn", "ln_ffn_out", "attn.q_norm",
                  "attn.k_norm", "final_norm")
_DECODER_IGNORED = re.compile(r"^lm_head\.|(^|\.)rotary_emb\.")  # the LM head, rotary buffers


def decoder_shapes(cfg) -> tuple[Shapes, Shapes]:
    """Stored shapes of a decoder embedder's parameters (outside the layers, in each layer)."""
    d, hd, ff = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size
    q, kv = cfg.num_heads * hd, cfg.num_kv_heads * hd
    layer = {"ln_attn": (d,), "attn.q": (q, d), "attn.k": (kv, d), "attn.v": (kv, d),
             "attn.out": (d, q), "attn.q_norm": (hd,), "attn.k_norm": (hd,), "ln_ffn": (d,),
             "ffn.gate": (ff, d), "ffn.up": (ff, d), "ffn.down": (d, ff)}
    layer.update({path: (d,) for path in DECODER_NAMES[cfg.architecture] if path not in layer})
    return {"embeddings.word": (cfg.vocab_size, d), "final_norm": (d,)}, layer


def load_decoder_params(path: str | os.PathLike, cfg, keep_bf16: bool = True) -> dict:
    """The parameter tree of encoder.decode_tokens from a Qwen3 or Gemma 3 checkpoint.

    keep_bf16: bfloat16 tensors stay in the memory-mapped file as their 16-bit patterns
    (uint16), and encoder.decode_tokens widens one layer at a time; False widens every tensor
    here (textbook.decode_tokens needs that)."""
    names = {**_DECODER_OUTSIDE, **DECODER_NAMES[cfg.architecture]}
    tensors = {}
    for name, array in read_tensors(path, keep_bf16=keep_bf16).items():
        name = name.removeprefix("model.")
        if not _DECODER_IGNORED.search(name):
            tensors[name] = array
    outside, layer = decoder_shapes(cfg)
    want = {names[p] + ".weight": shape for p, shape in outside.items()}
    for i in range(cfg.num_layers):
        want.update({names[p].format(i=i) + ".weight": shape for p, shape in layer.items()})
    _check_tensors(path, tensors, want, f"{cfg.architecture}, {cfg.num_layers} layers")

    def tree(paths, i: int = 0) -> dict:  # {"attn.q": ...} -> {"attn": {"q": ...}}
        out = {}
        for p in paths:
            *parents, leaf = p.split(".")
            node = out
            for key in parents:
                node = node.setdefault(key, {})
            t = tensors[names[p].format(i=i) + ".weight"]
            # Norms and the word table as they are; a linear layer's [out, in] as a
            # transposed view [in, out], no copy.
            node[leaf] = {"w": t} if p in _DECODER_NORMS else t if p == "embeddings.word" \
                else {"w": t.T}
        return out

    params = tree(outside)
    params["layers"] = [tree(layer, i) for i in range(cfg.num_layers)]
    return params


def _check_tensors(path, tensors: dict, want: Shapes, what: str) -> None:
    """A CheckpointError unless `tensors` has exactly the names of `want`, in its shapes."""
    missing = sorted(set(want) - set(tensors))
    unexpected = sorted(set(tensors) - set(want))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:5])}"
                         + (" …" if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s): {', '.join(unexpected[:5])}"
                         + (" …" if len(unexpected) > 5 else ""))
        raise CheckpointError(f"{path} does not match config.json ({what}): " + "; ".join(parts)
                              + ". Check that config.json and the weights come from the same "
                              "model.")
    for name, shape in want.items():
        if tensors[name].shape != shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {list(tensors[name].shape)} but config.json "
                f"implies {list(shape)}. Check that config.json and the weights belong together.")
