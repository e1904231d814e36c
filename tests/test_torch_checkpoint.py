"""pytorch_model.bin read without torch, hostile pickles refused with nothing run, and checkpoints
split into shards. torch (test-only) writes the files and is the reference reader."""

import json
import os
import pickle
import subprocess
import time
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from minisbert import checkpoint, weights
from minisbert.families import encoder_config
from minisbert.errors import CheckpointError, ModelFileMissing


def _random_state_dict(torch, dtype):
    """Tensors the way models hold them: matrices, vectors, a scalar, a transposed (non-contiguous)
    view, two tensors sharing one storage at different offsets, a Parameter, integers."""
    gen = torch.Generator().manual_seed(0)
    big = torch.randn(40, generator=gen).to(dtype)
    return OrderedDict([
        ("embeddings.word_embeddings.weight", torch.randn(50, 16, generator=gen).to(dtype)),
        ("encoder.layer.0.attention.self.query.bias", torch.randn(16, generator=gen).to(dtype)),
        ("transposed", torch.randn(16, 8, generator=gen).to(dtype).t()),
        ("shared.whole", big),
        ("shared.slice", big[5:29].view(4, 6)),
        ("shared.strided", big[1::3]),
        ("parameter", torch.nn.Parameter(torch.randn(3, 4, generator=gen).to(dtype))),
        ("scalar", torch.tensor(1.5).to(dtype)),
        ("empty", torch.zeros(0, 4).to(dtype)),
        ("position_ids", torch.arange(12).unsqueeze(0)),
    ])


def _as_numpy(t):
    t = t.detach()
    return t.float().numpy() if t.is_floating_point() else t.numpy()


@pytest.mark.parametrize("dtype_name", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("protocol", [2, 4])
def test_torch_save_and_safetensors_read_bit_identical(tmp_path, dtype_name, protocol):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    state = _random_state_dict(torch, getattr(torch, dtype_name))
    torch.save(state, tmp_path / "pytorch_model.bin", pickle_protocol=protocol)
    safetensors_torch.save_file({k: v.detach().contiguous().clone() for k, v in state.items()},
                                str(tmp_path / "model.safetensors"))

    from_bin = weights.read_pytorch_bin(tmp_path / "pytorch_model.bin")
    from_safetensors = weights.read_safetensors(tmp_path / "model.safetensors")
    assert list(from_bin) == list(state)  # every tensor, in the file's order
    for name, t in state.items():
        want = _as_numpy(t)
        for got in (from_bin[name], from_safetensors[name]):
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert got.tobytes() == want.tobytes(), name  # bit for bit, not merely close
    print(f"\n{dtype_name}, pickle protocol {protocol}: {len(state)} tensors bit-identical to "
          "torch's, read from pytorch_model.bin and from model.safetensors")


def test_module_state_dict_with_metadata(tmp_path):
    """model.state_dict() carries a `_metadata` attribute, which the pickle sets with BUILD."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.LayerNorm(3))
    torch.save(model.state_dict(), tmp_path / "m.bin")
    ours = weights.read_pytorch_bin(tmp_path / "m.bin")
    assert ours.keys() == model.state_dict().keys()
    for name, t in model.state_dict().items():
        np.testing.assert_array_equal(ours[name], _as_numpy(t))


def test_real_model_weights_through_pytorch_model_bin(minilm_path, tmp_path):
    """all-MiniLM-L6-v2's weights written by torch.save read the same as its model.safetensors,
    and float32 storages stay memory-mapped views of the file."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.save(safetensors_torch.load_file(str(minilm_path / "model.safetensors")),
               tmp_path / "pytorch_model.bin")
    from_bin = weights.read_pytorch_bin(tmp_path / "pytorch_model.bin")
    reference = weights.read_safetensors(minilm_path / "model.safetensors")
    assert from_bin.keys() == reference.keys()
    for name in reference:
        assert from_bin[name].tobytes() == reference[name].tobytes(), name
    word = from_bin["embeddings.word_embeddings.weight"]
    assert not word.flags.owndata and not word.flags.writeable

    # And the encoder's parameter tree built from either file is the same, leaf for leaf.
    config_path = minilm_path / "config.json"
    cfg = encoder_config(json.loads(config_path.read_text()), config_path)
    leaves = 0
    for a, b in zip(_leaves(checkpoint.load_params(tmp_path / "pytorch_model.bin", cfg)),
                    _leaves(checkpoint.load_params(minilm_path / "model.safetensors", cfg)),
                    strict=True):
        assert a[0] == b[0] and a[1].shape == b[1].shape and (a[1] == b[1]).all(), a[0]
        leaves += 1
    print(f"\n{len(reference)} tensors of all-MiniLM-L6-v2 identical through pytorch_model.bin, "
          f"and the {leaves} arrays of the parameter tree")


def _leaves(tree, path=""):
    """(path, array) for every array of a nested dict/list parameter tree, in order."""
    if isinstance(tree, dict):
        for key in sorted(tree):
            yield from _leaves(tree[key], f"{path}.{key}")
    elif isinstance(tree, list):
        for i, item in enumerate(tree):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, tree


def test_legacy_format_gets_a_conversion_hint(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"legacy checkpoint format.*torch < 1\.6.*save_file"):
        weights.read_pytorch_bin(path)


def test_broken_archives_are_named(tmp_path):
    torch = pytest.importorskip("torch")
    good = tmp_path / "good.bin"
    torch.save({"w": torch.arange(100, dtype=torch.float32)}, good)
    with zipfile.ZipFile(good) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    storage = next(n for n in entries if n.endswith("/data/0"))

    def rewrite(name, change):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as z:
            for n, data in change(dict(entries)).items():
                z.writestr(n, data)
        return path

    cases = {
        "short storage": (rewrite("short.bin", lambda e: {**e, storage: e[storage][:40]}),
                          r"storage '0' should hold 100 elements \(400 bytes\).*has 40 bytes"),
        "no storage": (rewrite("nostore.bin", lambda e: {n: d for n, d in e.items()
                                                         if n != storage}),
                       r"refers to storage '0' but the archive has no .*/data/0"),
        "no data.pkl": (rewrite("nopkl.bin", lambda e: {n: d for n, d in e.items()
                                                        if not n.endswith("data.pkl")}),
                        r"not a PyTorch checkpoint.*holds 0"),
        "not a state dict": (tmp_path / "list.bin", r"holds a pickled list, not a state dict"),
        "non-tensor entry": (tmp_path / "epoch.bin",
                             r"entry 'epoch' of the state dict is the int 3, not a tensor"),
        "random bytes": (tmp_path / "junk.bin",
                         r"the file is neither a zip archive .* nor a readable pickle"),
    }
    torch.save([torch.ones(2)], tmp_path / "list.bin")
    torch.save({"w": torch.ones(2), "epoch": 3}, tmp_path / "epoch.bin")
    (tmp_path / "junk.bin").write_bytes(b"these bytes are not a checkpoint\n" * 4)
    for name, (path, message) in cases.items():
        with pytest.raises(CheckpointError, match=message) as e:
            weights.read_pytorch_bin(path)
        assert str(path) in str(e.value), name
        print(f"\n{name}: {e.value}")


def test_out_of_bounds_layout_is_refused(tmp_path):
    """A tensor whose size and stride reach past its storage: refused, never read."""
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(10)}, tmp_path / "ok.bin")
    with zipfile.ZipFile(tmp_path / "ok.bin") as z:
        entries = {n: z.read(n) for n in z.namelist()}
    pkl = next(n for n in entries if n.endswith("data.pkl"))
    # size (10,) -> (200,): K\x0a is BININT1 10, the size, right after the offset K\x00.
    assert entries[pkl].count(b"K\x00K\x0a\x85") == 1
    entries[pkl] = entries[pkl].replace(b"K\x00K\x0a\x85", b"K\x00K\xc8\x85")
    with zipfile.ZipFile(tmp_path / "bad.bin", "w") as z:
        for n, data in entries.items():
            z.writestr(n, data)
    with pytest.raises(CheckpointError, match=r"size \[200\] at offset 0 reaches element 199 of a "
                                              r"storage of 10 elements"):
        weights.read_pytorch_bin(tmp_path / "bad.bin")


# ---------------------------------------------------------------------------- hostile pickles

class _Touch:
    """Pickles to a call that creates `target` when unpickled by a plain pickle.load."""

    def __init__(self, how, target):
        self.how, self.target = how, str(target)

    def __reduce__(self):
        code = f"open({self.target!r}, 'w').close()"
        if self.how == "os.system":
            return os.system, (f"touch '{self.target}'",)
        if self.how == "builtins.exec":
            return exec, (code,)
        if self.how == "builtins.eval":
            return eval, (code,)
        if self.how == "subprocess.Popen":
            return subprocess.Popen, (["touch", self.target],)
        raise ValueError(self.how)


def _hostile_pickles(target):
    """name -> (pickle bytes, the global the error must name). Each would create `target`."""
    import torch  # only to name torch's own rebuild function in the nested case
    cases = {}
    for how, spelled in [("os.system", "posix.system"), ("builtins.exec", "builtins.exec"),
                         ("builtins.eval", "builtins.eval"),
                         ("subprocess.Popen", "subprocess.Popen")]:
        for protocol in (0, 2, 4):
            cases[f"{how}, protocol {protocol}"] = (pickle.dumps(_Touch(how, target), protocol),
                                                    spelled)

    class InsideStateDict:  # a state dict whose value is the payload
        def __reduce__(self):
            return OrderedDict, ([("encoder.weight", _Touch("os.system", target))],)

    class InsideTensor:  # the payload as the storage argument of torch's own rebuild function
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (_Touch("builtins.exec", target), 0, (1,), (1,),
                                                     False, OrderedDict())

    cases["nested in a state dict"] = (pickle.dumps(InsideStateDict(), 2), "posix.system")
    cases["nested in a tensor"] = (pickle.dumps(InsideTensor(), 2), "builtins.exec")
    # Hand-written: a name reached through an allowed module, and getattr to fetch os.system.
    cases["attribute of an allowed module"] = (b"\x80\x02ctorch._utils\nos.system\n.",
                                               "torch._utils.os.system")
    cases["getattr"] = (b"\x80\x02cbuiltins\ngetattr\n.", "builtins.getattr")
    # The two older instructions that build objects from a class: INST names it inline.
    touch = f"touch '{target}'".encode()
    cases["INST instruction"] = (b"(S'" + touch + b"'\nios\nsystem\n.", "os.system")
    cases["OBJ instruction"] = (b"(cos\nsystem\nS'" + touch + b"'\no.", "os.system")
    return cases


def _torch_shaped_zip(path, data_pkl):
    """A zip laid out like torch.save's: archive/data.pkl, byteorder, version, a storage."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        z.writestr("archive/data/0", b"\x00" * 16)


@pytest.mark.parametrize("container", ["bare pickle", "torch zip"])
def test_hostile_pickles_are_refused_and_nothing_runs(tmp_path, container):
    pytest.importorskip("torch")
    target = tmp_path / "executed"
    cases = _hostile_pickles(target)
    for name, (payload, spelled) in cases.items():
        path = tmp_path / "pytorch_model.bin"
        if container == "bare pickle":
            path.write_bytes(payload)
        else:
            _torch_shaped_zip(path, payload)
        refused = rf"asks for {spelled}\b.*refused it and ran nothing"
        with pytest.raises(CheckpointError, match=refused):
            weights.read_pytorch_bin(path)
        time.sleep(0.01 if "Popen" not in name else 0.3)  # a spawned process would have run by now
        assert not target.exists(), f"{name}: the payload ran"
    print(f"\n{container}: {len(cases)} hostile pickles refused, none ran")


def test_the_hostile_pickles_do_run_under_plain_pickle(tmp_path):
    """The control: each payload above really creates the file when a plain pickle.loads reads
    it, so the test above would notice if the restricted reader ran it."""
    pytest.importorskip("torch")
    target = tmp_path / "executed"
    for name, (payload, _) in _hostile_pickles(target).items():
        if name.startswith(("attribute", "getattr")):
            continue  # these only name something; they do not call it
        try:
            result = pickle.loads(payload)
        except Exception:
            pass  # nested cases fail after the payload ran (torch rejects an int storage)
        else:
            if isinstance(result, subprocess.Popen):
                result.wait(timeout=10)
        assert target.exists(), f"{name}: the control payload did not run"
        target.unlink()


# ---------------------------------------------------------------------------- sharded checkpoints

def _tiny_bert(torch):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=64)
    return transformers.BertModel(config, add_pooling_layer=False).eval()


def test_sharded_safetensors_as_transformers_writes_them(tmp_path):
    torch = pytest.importorskip("torch")
    model = _tiny_bert(torch)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and not (tmp_path / "model.safetensors").exists()
    assert weights.find_weights(tmp_path) == tmp_path / "model.safetensors.index.json"
    ours = weights.read_tensors(weights.find_weights(tmp_path))
    state = model.state_dict()
    assert ours.keys() == set(index["weight_map"]) <= state.keys()
    for name in ours:
        assert ours[name].tobytes() == _as_numpy(state[name]).tobytes(), name
    print(f"\n{len(ours)} tensors from {len(shards)} shards, identical to the model's state dict")


def test_sharded_pytorch_model_bin(tmp_path):
    torch = pytest.importorskip("torch")
    state = _tiny_bert(torch).state_dict()
    names = list(state)
    weight_map = {}
    for i, part in enumerate((names[:len(names) // 2], names[len(names) // 2:])):
        shard = f"pytorch_model-0000{i + 1}-of-00002.bin"
        torch.save({n: state[n] for n in part}, tmp_path / shard)
        weight_map.update(dict.fromkeys(part, shard))
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    ours = weights.read_tensors(weights.find_weights(tmp_path))
    assert ours.keys() == state.keys()
    for name, t in state.items():
        assert ours[name].tobytes() == _as_numpy(t).tobytes(), name


def test_sharded_checkpoint_errors_name_the_shard_and_tensor(tmp_path):
    torch = pytest.importorskip("torch")
    _tiny_bert(torch).save_pretrained(tmp_path, max_shard_size="20KB")
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    name, shard = next(iter(index["weight_map"].items()))

    (tmp_path / shard).rename(tmp_path / "moved")
    with pytest.raises(ModelFileMissing, match=rf"{shard}: no such file, but {index_path.name} "
                                               r"says it holds \d+ tensor"):
        weights.read_tensors(index_path)
    (tmp_path / "moved").rename(tmp_path / shard)

    index["weight_map"]["encoder.layer.9.output.dense.weight"] = shard
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=rf"{shard} lacks 1 tensor\(s\) that "
                                              r".*: encoder\.layer\.9\.output\.dense\.weight"):
        weights.read_tensors(index_path)

    index["weight_map"] = {name: "../elsewhere.safetensors"}
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="not a file name in the same folder"):
        weights.read_tensors(index_path)

    index_path.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(CheckpointError, match="no weight_map"):
        weights.read_tensors(index_path)


def test_find_weights_order_and_missing(tmp_path):
    with pytest.raises(ModelFileMissing, match="holds no weights: none of model.safetensors"):
        weights.find_weights(tmp_path)
    for name in reversed(weights.WEIGHT_FILES):
        (tmp_path / name).write_bytes(b"")
        assert weights.find_weights(tmp_path) == tmp_path / name  # the earlier one wins
