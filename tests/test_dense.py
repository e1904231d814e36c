"""Dense modules against sentence-transformers' Dense on random weights: every supported
activation, with and without bias, the residual form, token-level Dense, both weight formats."""

import json

import numpy as np
import pytest

from minisbert import dense
from minisbert.errors import CheckpointError, ConfigError, ModelFileMissing, UnsupportedModelError


def _st_dense(tmp_path, in_features=12, out_features=7, activation="Tanh", safe=True, seed=0,
              **kwargs):
    """A sentence-transformers Dense with random weights, saved to tmp_path/2_Dense and loaded
    back by sentence-transformers itself (so the reference has read the same files)."""
    torch = pytest.importorskip("torch")
    Dense = pytest.importorskip("sentence_transformers.sentence_transformer.modules").Dense
    torch.manual_seed(seed)
    module = Dense(in_features, out_features, activation_function=getattr(torch.nn, activation)(),
                   **kwargs)
    with torch.no_grad():  # std 0.5: outputs spread over tanh's curved part, not its linear middle
        for p in module.parameters():
            p.normal_(0, 0.5)
    folder = tmp_path / "2_Dense"
    folder.mkdir()
    module.save(str(folder), safe_serialization=safe)
    return folder, Dense.load(str(folder)).eval()


def _compare(name, ours, ref):
    worst = float(np.abs(ours - ref).max())
    first = [f"{v:.6f}" for v in ours.reshape(-1)[:3]], [f"{v:.6f}" for v in ref.reshape(-1)[:3]]
    print(f"\n{name}: ours {' '.join(first[0])}  ref {' '.join(first[1])}  maxdiff = {worst:.2e}")
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("safe", [True, False], ids=["model.safetensors", "pytorch_model.bin"])
@pytest.mark.parametrize("activation", list(dense.TORCH_ACTIVATIONS))
def test_dense_matches_sentence_transformers(tmp_path, activation, safe):
    torch = pytest.importorskip("torch")
    folder, ref_module = _st_dense(tmp_path, activation=activation, safe=safe)
    config = json.loads((folder / "config.json").read_text())
    assert config["activation_function"].endswith("." + activation)
    x = np.random.default_rng(1).standard_normal((9, 12)).astype(np.float32)
    with torch.no_grad():
        ref = ref_module({"sentence_embedding": torch.from_numpy(x)})["sentence_embedding"].numpy()
    ours = dense.load_dense(folder, width=12)(x)
    assert ours.shape == (9, 7) and ours.dtype == np.float32
    _compare(f"{config['activation_function']}, {'safetensors' if safe else 'bin'}", ours, ref)


@pytest.mark.parametrize("in_features, out_features, kwargs", [
    (12, 7, {"bias": False}),
    (12, 12, {"use_residual": True}),  # the input itself is added
    (12, 7, {"use_residual": True}),   # a projection of the input is added
    (12, 7, {"module_input_name": "token_embeddings"}),  # on every token vector
])
def test_dense_variants(tmp_path, in_features, out_features, kwargs):
    torch = pytest.importorskip("torch")
    folder, ref_module = _st_dense(tmp_path, in_features, out_features, **kwargs)
    print(f"\nconfig.json: {(folder / 'config.json').read_text()}")
    key = kwargs.get("module_input_name", "sentence_embedding")
    shape = (4, 6, in_features) if key == "token_embeddings" else (9, in_features)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        ref = ref_module({key: torch.from_numpy(x)})[key].numpy()
    module = dense.load_dense(folder, width=in_features)
    assert module.on_tokens == (key == "token_embeddings")
    assert (module.in_features, module.out_features) == (in_features, out_features)
    _compare(", ".join(f"{k}={v}" for k, v in kwargs.items()), module(x), ref)


def test_width_disagreeing_with_previous_module_names_both(tmp_path):
    folder, _ = _st_dense(tmp_path, in_features=12)
    with pytest.raises(ConfigError, match=r"in_features is 12, but the module before it outputs "
                                          r"vectors of width 384") as e:
        dense.load_dense(folder, width=384)
    assert str(folder / "config.json") in str(e.value)


def test_weights_disagreeing_with_config_name_both_shapes(tmp_path):
    folder, _ = _st_dense(tmp_path, 12, 7)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "out_features": 5}))
    with pytest.raises(CheckpointError, match=r"linear\.weight has shape \[7, 12\] but the Dense "
                       r"config\.json beside it \(in_features=12, out_features=5, .*\) implies \[5, 12\]"):
        dense.load_dense(folder, width=12)
    (folder / "config.json").write_text(json.dumps({**config, "bias": False}))
    with pytest.raises(CheckpointError, match=r"unexpected 1 tensor\(s\): linear\.bias"):
        dense.load_dense(folder, width=12)


@pytest.mark.parametrize("change, error, message", [
    ({"activation_function": "torch.nn.modules.activation.Softmax"}, UnsupportedModelError,
     r"'torch\.nn\.modules\.activation\.Softmax' is not supported; minisbert implements "
     r"torch\.nn\.Identity, torch\.nn\.Tanh"),
    ({"activation_function": "my_package.Swish"}, UnsupportedModelError,
     r"'my_package\.Swish' is not a torch\.nn activation; minisbert runs no code a folder names"),
    ({"out_features": "7"}, ConfigError, r"out_features is '7'"),
    ({"module_input_name": "token_embeddings", "module_output_name": "sentence_embedding"},
     UnsupportedModelError, r"from 'token_embeddings' to 'sentence_embedding' is not supported"),
])
def test_bad_dense_configs_are_named(tmp_path, change, error, message):
    folder, _ = _st_dense(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(error, match=message):
        dense.load_dense(folder, width=12)


def test_missing_pieces_are_named(tmp_path):
    folder, _ = _st_dense(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["in_features"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"has no 'in_features'"):
        dense.load_dense(folder, width=12)
    with pytest.raises(ModelFileMissing, match=r"elsewhere/config\.json: no such file"):
        dense.load_dense(tmp_path / "elsewhere", width=12)


def test_missing_weights_are_named(tmp_path):
    folder, _ = _st_dense(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelFileMissing, match=r"2_Dense holds no weights"):
        dense.load_dense(folder, width=12)
