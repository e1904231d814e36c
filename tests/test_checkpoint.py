"""Reading model.safetensors without torch: dtypes, names, shape checks, memory mapping."""

import json
import shutil

import numpy as np
import pytest

import minisbert
from minisbert import weights


@pytest.fixture(scope="module")
def safetensors_torch():
    """safetensors' torch reader and writer: the reference for what a checkpoint holds."""
    pytest.importorskip("torch")
    return pytest.importorskip("safetensors.torch")


@pytest.fixture(scope="module")
def reference_tensors(minilm_path, safetensors_torch):
    return safetensors_torch.load_file(str(minilm_path / "model.safetensors"))


@pytest.mark.parametrize("dtype_name", ["float32", "float16", "bfloat16", "float64"])
def test_dtypes_read_as_torch_reads_them(reference_tensors, safetensors_torch, tmp_path,
                                         dtype_name):
    import torch
    dtype = getattr(torch, dtype_name)
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file({k: v.to(dtype) if v.is_floating_point() else v
                                 for k, v in reference_tensors.items()}, str(path))
    ours = weights.read_safetensors(path)
    ref = safetensors_torch.load_file(str(path))
    assert ours.keys() == ref.keys()
    for name, t in ref.items():
        want = t.float().numpy() if t.is_floating_point() else t.numpy()
        assert ours[name].dtype == want.dtype, name
        np.testing.assert_array_equal(ours[name], want, err_msg=name)  # exact, bit for bit
    print(f"\n{dtype}: {len(ref)} tensors equal to torch's reading, bit for bit")


def test_f32_weights_are_memory_mapped_not_copied(minilm_path, minilm):
    tensors = weights.read_safetensors(minilm_path / "model.safetensors")
    word = tensors["embeddings.word_embeddings.weight"]
    assert not word.flags.owndata and not word.flags.writeable  # a read-only view of the map
    table = minilm.params["embeddings"]["word"]
    assert not table.flags.owndata and not table.flags.writeable


def _copy_with(minilm_path, tmp_path, rename=None, drop=(), reshape=None, dtype=None):
    """A copy of the MiniLM folder whose checkpoint was rewritten by torch."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    folder = tmp_path / "model"
    shutil.copytree(minilm_path, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    tensors = safetensors_torch.load_file(str(minilm_path / "model.safetensors"))
    out = {}
    for name, t in tensors.items():
        if name in drop:
            continue
        if reshape and name in reshape:
            t = t.flatten()[:int(np.prod(reshape[name]))].reshape(reshape[name]).clone()
        if dtype and t.is_floating_point():
            t = t.to(getattr(torch, dtype))
        out[rename(name) if rename else name] = t
    safetensors_torch.save_file(out, str(folder / "model.safetensors"))
    return folder


def test_task_prefix_and_gamma_beta_names_load_the_same_model(minilm_path, minilm, tmp_path):
    def old_style(name):  # a TF-era task checkpoint: "bert." prefix, LayerNorm.gamma/beta
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        return "bert." + name
    folder = _copy_with(minilm_path, tmp_path, rename=old_style)
    texts = ["A man is eating food.", "Ein Mann isst."]
    np.testing.assert_array_equal(minisbert.load(folder).encode(texts), minilm.encode(texts))


def test_missing_tensor_is_named(minilm_path, tmp_path):
    name = "encoder.layer.3.attention.self.key.weight"
    folder = _copy_with(minilm_path, tmp_path, drop={name})
    with pytest.raises(minisbert.CheckpointError, match=r"missing 1 tensor\(s\): " + name):
        minisbert.load(folder)


def test_unexpected_tensor_is_named(minilm_path, tmp_path):
    folder = _copy_with(minilm_path, tmp_path,
                        rename=lambda n: n.replace("encoder.layer.5.", "encoder.layer.6."))
    with pytest.raises(minisbert.CheckpointError, match=r"unexpected .*encoder\.layer\.6\."):
        minisbert.load(folder)


def test_shape_disagreeing_with_config_is_named(minilm_path, tmp_path):
    name = "encoder.layer.0.intermediate.dense.weight"
    folder = _copy_with(minilm_path, tmp_path, reshape={name: (1000, 384)})
    with pytest.raises(minisbert.CheckpointError, match=name + r" has shape \[1000, 384\].*\[1536, 384\]"):
        minisbert.load(folder)


def test_config_with_more_layers_than_checkpoint(minilm_path, tmp_path):
    folder = _copy_with(minilm_path, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 7
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(minisbert.CheckpointError, match=r"missing 16 tensor\(s\): encoder\.layer\.6\."):
        minisbert.load(folder)


def test_bf16_checkpoint_encodes_close_to_f32(minilm_path, minilm, tmp_path):
    """A BF16 copy runs in float32 here: same vectors up to bf16's rounding of the weights."""
    folder = _copy_with(minilm_path, tmp_path, dtype="bfloat16")
    texts = ["A man is eating food.", "The weather is lovely today."]
    a, b = minisbert.load(folder).encode(texts), minilm.encode(texts)
    cos = (a * b).sum(1)
    print(f"\nbf16 vs f32 weights: min cosine {cos.min():.5f}")
    assert cos.min() > 0.99
