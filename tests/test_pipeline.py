"""The whole sentence-transformers pipeline against sentence-transformers on random weights:
the module layouts of LaBSE and distiluse-base-multilingual-cased-v2 (Dense after pooling),
prompts with and without include_prompt, truncate_dim, and the same folder with its weights
as pytorch_model.bin or as a sharded checkpoint. Every folder is written by
sentence-transformers itself (see st_folder.py) and read by both sides.

Tolerances: normalized vectors <= 1e-5 max abs (cosine >= 1 - 1e-6); raw vectors atol 1e-4
+ rtol 1e-5. The always-run cases use small widths; --slow runs the real widths.
"""

import json
import shutil

import numpy as np
import pytest

import minisbert
import st_folder
from minisbert import pooling
from minisbert.errors import ConfigError, PromptError, UnsupportedModelError
from minisbert.fingerprint import model_fingerprint
from reference import compare

E5_PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def texts():
    return st_folder.texts()


def reference(folder, **kwargs):
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(folder), device="cpu", **kwargs)


def make(tmp_path, minilm_path, **kwargs):
    pytest.importorskip("sentence_transformers")
    return st_folder.make_folder(tmp_path, minilm_path, **kwargs)


def assert_normalized_match(name, ours, ref):
    maxdiff, mincos = compare(name, ours, ref)
    assert maxdiff <= 1e-5 and mincos >= 1 - 1e-6


def assert_raw_match(name, ours, ref):
    compare(name, ours, ref)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-5)


# ---------------------------------------------------------------------------- Dense layouts

@pytest.mark.parametrize("hidden, layers, heads", [
    (32, 2, 4), pytest.param(768, 2, 12, marks=pytest.mark.slow)])
def test_labse_layout(tmp_path, minilm_path, texts, hidden, layers, heads):
    """LaBSE: BERT, [CLS] pooling, Dense hidden -> hidden with tanh, Normalize."""
    folder = make(tmp_path, minilm_path, hidden=hidden, layers=layers, heads=heads,
                  pooling="cls", dense=((hidden, "Tanh"),), normalize=True)
    ours, ref = minisbert.load(folder), reference(folder)
    print(f"\n{ours}")
    assert ours.dim == ref.get_embedding_dimension() == hidden and ours.normalize
    assert_normalized_match(f"LaBSE layout, hidden {hidden}", ours.encode(texts),
                            ref.encode(texts))


@pytest.mark.parametrize("hidden, layers, heads, out", [
    (32, 2, 4, 24), pytest.param(768, 2, 12, 512, marks=pytest.mark.slow)])
def test_distiluse_layout(tmp_path, minilm_path, texts, hidden, layers, heads, out):
    """distiluse-base-multilingual-cased-v2: mean pooling, then Dense hidden -> out with tanh,
    no Normalize. The real model's encoder is DistilBERT, which minisbert does not run yet:
    this is its module layout after a BERT encoder."""
    folder = make(tmp_path, minilm_path, hidden=hidden, layers=layers, heads=heads,
                  pooling="mean", dense=((out, "Tanh"),))
    ours, ref = minisbert.load(folder), reference(folder)
    assert ours.dim == ref.get_embedding_dimension() == out and not ours.normalize
    assert_raw_match(f"distiluse layout, {hidden} -> {out}", ours.encode(texts), ref.encode(texts))


def test_two_dense_modules_and_several_modes(tmp_path, minilm_path, texts):
    """Dense may repeat; the width runs hidden x modes -> 40 -> 16."""
    folder = make(tmp_path, minilm_path, pooling=["mean", "max"], dense=((40, "ReLU"),
                                                                       (16, "Tanh")))
    ours, ref = minisbert.load(folder), reference(folder)
    assert ours.dim == ref.get_embedding_dimension() == 16
    assert_raw_match("mean+max -> Dense 64->40 ReLU -> Dense 40->16 tanh", ours.encode(texts),
                     ref.encode(texts))


# ---------------------------------------------------------------------------- prompts

@pytest.mark.parametrize("pooling_mode", ["mean", *(pytest.param(m, marks=pytest.mark.slow)
                                                    for m in ("cls", "lasttoken"))])
@pytest.mark.parametrize("include_prompt", [True, False])
def test_prompts(tmp_path, minilm_path, texts, include_prompt, pooling_mode):
    """e5-style prompts with a default: the default, a named prompt, prompt="" (no prompt,
    not even the default) and a prompt text of the caller's, each as sentence-transformers."""
    folder = make(tmp_path, minilm_path, pooling=pooling_mode, include_prompt=include_prompt,
                  normalize=True, prompts=E5_PROMPTS, default_prompt_name="query")
    ours, ref = minisbert.load(folder), reference(folder)
    assert ours.prompts["query"] == "query: " and ours.default_prompt_name == "query"
    bge = "Represent this sentence for searching relevant passages: "
    for kwargs in ({}, {"prompt_name": "passage"}, {"prompt": ""}, {"prompt": bge},
                   {"prompt": bge, "prompt_name": "passage"}):  # prompt wins over prompt_name
        name = f"include_prompt={include_prompt} {pooling_mode} {kwargs}"
        assert_normalized_match(name, ours.encode(texts, **kwargs), ref.encode(texts, **kwargs))
    # The prompt changes the vectors (and leaving its tokens out changes them again).
    with_prompt, without = ours.encode(texts[:5]), ours.encode(texts[:5], prompt="")
    assert np.abs(with_prompt - without).max() > 1e-3


def test_prompt_length_as_sentence_transformers_counts_it(tmp_path, minilm_path):
    folder = make(tmp_path, minilm_path, include_prompt=False, prompts=E5_PROMPTS)
    ours, ref = minisbert.load(folder), reference(folder)
    transformer = ref[0]
    for prompt in ("query: ", "passage: ", "Represent this sentence: ", "x", ""):
        theirs = transformer._get_prompt_length(prompt) if prompt else 0
        print(f"{prompt!r}: ours {ours.prompt_length(prompt)}, theirs {theirs}")
        assert ours.prompt_length(prompt) == theirs


def test_unknown_prompt_name_lists_the_prompts(tmp_path, minilm_path):
    folder = make(tmp_path, minilm_path, prompts=E5_PROMPTS)
    model = minisbert.load(folder)
    with pytest.raises(PromptError, match=r"'qery' is not one of this model's prompts "
                                          r"\('document', 'passage', 'query'\)") as e:
        model.encode(["a"], prompt_name="qery")
    print(f"\n{e.value}")


def test_default_prompt_name_not_among_the_prompts(tmp_path, minilm_path):
    folder = make(tmp_path, minilm_path, prompts=E5_PROMPTS)
    path = folder / "config_sentence_transformers.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "default_prompt_name": "qry"}))
    with pytest.raises(ConfigError, match=r"default_prompt_name is \"qry\", which is not one of "
                                          r"its prompts"):
        minisbert.load(folder)


# ---------------------------------------------------------------------------- truncate_dim

def test_truncate_dim(tmp_path, minilm_path, texts):
    """Cut after the modules (Normalize included), then normalize_embeddings: load()'s
    truncate_dim, and encode()'s overriding it, as in sentence-transformers."""
    folder = make(tmp_path, minilm_path, dense=((24, "Tanh"),), normalize=True)
    ours, ref = minisbert.load(folder, truncate_dim=16), reference(folder, truncate_dim=16)
    assert ours.dim == ref.get_embedding_dimension() == 16
    a, b = ours.encode(texts), ref.encode(texts)
    assert a.shape == (len(texts), 16)
    assert_raw_match("truncate_dim=16 at load (cut unit vectors)", a, b)
    for kwargs in ({"truncate_dim": 8, "normalize_embeddings": True}, {"truncate_dim": 24}):
        assert_normalized_match(f"{kwargs}", ours.encode(texts, **kwargs),
                                ref.encode(texts, **kwargs))


def test_truncate_dim_beyond_the_dimension(tmp_path, minilm_path):
    folder = make(tmp_path, minilm_path, dense=((24, "Tanh"),))
    with pytest.raises(ValueError, match=r"truncate_dim=25: the model's vectors have 24 "
                                         r"components"):
        minisbert.load(folder, truncate_dim=25)
    model = minisbert.load(folder, truncate_dim=8)
    with pytest.raises(ValueError, match=r"truncate_dim=0: .* from 1 to 24"):
        model.encode(["a"], truncate_dim=0)


# ---------------------------------------------------------------------------- weight files

def test_pytorch_model_bin_only(tmp_path, minilm_path, texts):
    """The same folder with every module's weights as torch.save'd pytorch_model.bin: loads
    without torch on minisbert's side, matches sentence-transformers and gives the very same
    vectors as the safetensors folder."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    folder = make(tmp_path, minilm_path, pooling="cls", dense=((32, "Tanh"),), normalize=True)
    bins = tmp_path / "bin"
    shutil.copytree(folder, bins)
    for weights in bins.rglob("model.safetensors"):
        torch.save(load_file(str(weights)), weights.parent / "pytorch_model.bin")
        weights.unlink()
    assert {p.name for p in bins.rglob("*.bin")} == {"pytorch_model.bin"}
    ours = minisbert.load(bins)
    a = ours.encode(texts)
    assert_normalized_match("pytorch_model.bin folder", a, reference(bins).encode(texts))
    np.testing.assert_array_equal(a, minisbert.load(folder).encode(texts))
    assert model_fingerprint(bins) != model_fingerprint(folder)


def test_sharded_checkpoint(tmp_path, minilm_path, texts):
    transformers = pytest.importorskip("transformers")
    folder = make(tmp_path, minilm_path, normalize=True, prompts=E5_PROMPTS)
    sharded = tmp_path / "sharded"
    shutil.copytree(folder, sharded)
    (sharded / "model.safetensors").unlink()
    transformers.BertModel.from_pretrained(str(folder)).save_pretrained(sharded,
                                                                        max_shard_size="300KB")
    shards = list(sharded.glob("model-*.safetensors"))
    print(f"\n{len(shards)} shards")
    assert len(shards) >= 2 and (sharded / "model.safetensors.index.json").is_file()
    a = minisbert.load(sharded).encode(texts, prompt_name="passage")
    assert_normalized_match("sharded safetensors", a,
                            reference(sharded).encode(texts, prompt_name="passage"))
    np.testing.assert_array_equal(a, minisbert.load(folder).encode(texts, prompt_name="passage"))
    # The fingerprint follows the shards' contents.
    before = model_fingerprint(sharded)
    shard = sorted(shards)[-1]
    raw = bytearray(shard.read_bytes())
    raw[-8:] = bytes(8)
    shard.write_bytes(raw)
    assert model_fingerprint(sharded) != before


# ---------------------------------------------------------------------------- bad folders

def test_modules_that_do_not_fit_are_named(tmp_path, minilm_path):
    folder = make(tmp_path, minilm_path, dense=((24, "Tanh"),), normalize=True)
    modules_path = folder / "modules.json"
    modules = json.loads(modules_path.read_text())

    # A Dense whose in_features is not the pooled width: both widths and the file named.
    dense_config = folder / "2_Dense" / "config.json"
    original = dense_config.read_text()
    dense_config.write_text(json.dumps({**json.loads(original), "in_features": 48}))
    with pytest.raises(ConfigError, match=r"in_features is 48, but the module before it outputs "
                                          r"vectors of width 32") as e:
        minisbert.load(folder)
    assert str(dense_config) in str(e.value)
    dense_config.write_text(original)

    # Normalize before Pooling; the Transformer not first.
    for order, problem in (([0, 3, 1, 2], "Normalize comes before Pooling"),
                           ([1, 0, 2, 3], "the Transformer is not first")):
        modules_path.write_text(json.dumps([modules[i] for i in order]))
        with pytest.raises(UnsupportedModelError, match=problem):
            minisbert.load(folder)
    modules_path.write_text(json.dumps(modules))
    assert minisbert.load(folder).dim == 24


def test_dense_on_tokens_after_pooling_is_refused(tmp_path, minilm_path):
    folder = make(tmp_path, minilm_path, dense=((32, "Tanh"),))
    config_path = folder / "2_Dense" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(module_input_name="token_embeddings", module_output_name="token_embeddings")
    config_path.write_text(json.dumps(config))
    with pytest.raises(UnsupportedModelError, match=r"works on token vectors but comes after "
                                                    r"Pooling"):
        minisbert.load(folder)


def test_dense_on_tokens_before_pooling(tmp_path, minilm_path, texts):
    """A Dense on every token vector (module_input_name token_embeddings) before Pooling."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling
    folder = make(tmp_path, minilm_path)
    full = reference(folder)
    token_dense = Dense(32, 20, activation_function=torch.nn.Tanh(),
                        module_input_name="token_embeddings")
    ref = st.SentenceTransformer(modules=[full[0], token_dense, Pooling(20, "mean")], device="cpu")
    ref.save(str(tmp_path / "token-dense"))
    shutil.copy(folder / "vocab.txt", tmp_path / "token-dense" / "vocab.txt")
    ours = minisbert.load(tmp_path / "token-dense")
    assert len(ours.token_modules) == 1 and ours.dim == 20
    assert_raw_match("token-level Dense 32->20, mean", ours.encode(texts), ref.encode(texts))


def test_pooling_normalize_is_the_module():
    """The Normalize module is pooling.normalize: x / max(|x|, 1e-12), as torch's F.normalize."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    x[1] = 0
    ref = torch.nn.functional.normalize(torch.from_numpy(x), dim=1).numpy()
    np.testing.assert_allclose(pooling.normalize(x), ref, atol=1e-7)


# ---------------------------------------------------------------------------- command line

def test_command_line_prompts(tmp_path, minilm_path):
    """search --prompt-name for the question, --corpus-prompt-name for the texts; encode
    --prompt-name for an index's texts. Scores as sentence-transformers gives them."""
    from cli_support import assert_one_line_error, results, run_cli
    folder = make(tmp_path, minilm_path, include_prompt=False, normalize=True,
                  prompts=E5_PROMPTS, default_prompt_name="query")
    lines = ["The library closes early on public holidays.", "The cat sleeps on the windowsill.",
             "Stock markets fell after the announcement.", "My phone battery runs out at noon."]
    (tmp_path / "texts.txt").write_text("\n".join(lines), encoding="utf-8")
    question = "when does the library close"
    ref = reference(folder)
    scores = ref.encode([question], prompt_name="query") @ ref.encode(lines,
                                                                       prompt_name="passage").T
    expected = sorted(zip(lines, scores[0].round(3)), key=lambda p: -p[1])

    proc = run_cli("search", "-i", tmp_path / "texts.txt", "--model", folder, "-p", question,
                   "-k", "4", "--prompt-name", "query", "--corpus-prompt-name", "passage")
    print(proc.stdout, proc.stderr)
    got = results(proc.stdout)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert np.abs(np.array([s for _, s in got]) - [s for _, s in expected]).max() <= 0.0011

    assert run_cli("encode", "-i", tmp_path / "texts.txt", "-o", tmp_path / "index", "--model",
                   folder, "--prompt-name", "passage").returncode == 0
    from_index = run_cli("search", "--index", tmp_path / "index", "-p", question, "-k", "4",
                         "--prompt-name", "query")
    assert results(from_index.stdout) == got

    assert_one_line_error(run_cli("search", "-i", tmp_path / "texts.txt", "--model", folder,
                                  "-p", question, "--prompt-name", "qry"),
                          "'qry' is not one of this model's prompts", "'passage'")
    usage = run_cli("search", "--index", tmp_path / "index", "--corpus-prompt-name", "passage")
    assert usage.returncode == 2 and "--corpus-prompt-name applies to -i texts" in usage.stderr
