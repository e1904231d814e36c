"""`minisbert verify` passes on the test folders (MiniLM, a LaBSE-layout folder with prompts,
XLM-R, Japanese, pytorch_model.bin only) and fails, non-zero and showing the texts, when the
two sides honestly disagree: one weight changed on minisbert's side only, or a vocab.txt that
no longer matches the tokenizer.json HuggingFace reads. Without the reference stack it says
what to install."""

import json
import shutil
import sys

import numpy as np
import pytest

import minisbert
import st_folder
from cli_support import run_cli
from minisbert import cli, verify
from minisbert.errors import MissingDependencyError

E5_PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def labse(tmp_path_factory, minilm_path):
    """LaBSE's layout (cls, Dense tanh, Normalize) with e5 prompts, a default prompt and
    include_prompt false: every module verify has to get right."""
    pytest.importorskip("sentence_transformers")
    return st_folder.make_folder(tmp_path_factory.mktemp("labse"), minilm_path, pooling="cls",
                                 include_prompt=False, dense=((32, "Tanh"),), normalize=True,
                                 prompts=E5_PROMPTS, default_prompt_name="query")


def check(report):
    print(f"\n{report.table()}")
    return report


@pytest.mark.slow  # default run: under five minutes (CI runs --slow)
def test_cli_passes_on_minilm(minilm_path):
    pytest.importorskip("sentence_transformers")
    proc = run_cli("verify", minilm_path)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    for line in ("token ids identical        52 / 52", "verdict                    OK"):
        assert line in proc.stdout


@pytest.mark.parametrize("prompt_name", [None, "passage"])
def test_passes_on_a_folder_with_dense_and_prompts(labse, prompt_name):
    report = check(verify.verify(labse, prompt_name=prompt_name))
    assert report.ok and report.ours.prompt == E5_PROMPTS[prompt_name or "query"]
    assert report.ref.name.startswith("sentence-transformers")


def test_passes_on_xlmr_and_japanese_folders(tmp_path, sp_model, ja_vocab):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("sentencepiece")
    import xlmr_folder
    from reference import write_sentence_transformers_files
    xlmr = xlmr_folder.make_xlmr_folder(tmp_path / "xlmr", sp_model, hidden=32, layers=2,
                                        heads=4, intermediate=64, max_seq_length=64)
    write_sentence_transformers_files(xlmr, dim=32, max_seq_length=64, normalize=True)
    assert check(verify.verify(xlmr)).ok

    pytest.importorskip("fugashi")
    pytest.importorskip("ipadic")
    import japanese_folder
    ja = japanese_folder.make_folder(tmp_path / "ja", ja_vocab,
                                     layers=2, hidden=32, heads=4, intermediate=64)
    assert check(verify.verify(ja)).ok


def test_passes_on_pytorch_model_bin_only(labse, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    folder = shutil.copytree(labse, tmp_path / "bin")
    for weights in folder.rglob("model.safetensors"):
        torch.save(load_file(str(weights)), weights.parent / "pytorch_model.bin")
        weights.unlink()
    assert check(verify.verify(folder)).ok


def test_one_weight_changed_on_one_side_fails(labse, monkeypatch, capsys):
    """minisbert's side reads the folder with one weight of the last layer changed by 0.05;
    the reference reads the folder as it is. The command exits 1 and names the texts."""
    model = minisbert.load(labse)
    down = model.params["layers"][-1]["ffn"]["down"]
    down["w"] = down["w"].copy()  # the loaded weights are read-only views of the file
    down["w"][3, 5] += 0.05
    monkeypatch.setattr(verify, "load", lambda folder: model)
    status = cli.main(["verify", str(labse)])
    out = capsys.readouterr().out
    print(out)
    assert status == 1
    assert "token ids identical        52 / 52" in out and "FAILED: outside tolerance" in out
    worst = [line for line in out.splitlines() if line.strip().startswith("differs by")]
    assert worst and any(text in worst[0] for text in verify.sample_texts())


def test_tokenizer_json_that_no_longer_matches_its_config_fails(labse, tmp_path, capsys):
    """transformers 5 rebuilds BERT's normalizer from tokenizer_config.json (do_lower_case:
    true here), minisbert runs the one tokenizer.json names: with the file's BertNormalizer
    switched to keep case, the ids differ and verify shows the first differing text with both
    id lists. (The command runs in this process: test_cli_passes_on_minilm runs it as a user
    would.)"""
    folder = shutil.copytree(labse, tmp_path / "cased")
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    spec["normalizer"]["lowercase"] = False
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    status = cli.main(["verify", str(folder), "-n", "12"])
    out = capsys.readouterr().out
    print(out)
    assert status == 1
    assert "12 texts" in out and "FAILED" in out
    assert "first differing text #0: 'The train to the airport" in out
    ours, ref = (json.loads(line.split(maxsplit=1)[1]) for line in out.splitlines()
                 if line.strip().startswith(("minisbert  [", "reference  [")))
    # [CLS] query : the ...: minisbert keeps "The", which the uncased vocabulary lacks
    assert ref[3] == spec["model"]["vocab"]["the"] and ours[3] == spec["model"]["vocab"]["[UNK]"]


def test_texts_file_and_count(labse, tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("query about trains\n\n  the cat sleeps  \nstock markets\n", encoding="utf-8")
    status = cli.main(["verify", str(labse), "--texts", str(texts), "-n", "2"])
    out = capsys.readouterr().out
    print(out)
    assert status == 0 and "2 texts, 32 dims" in out


def test_with_transformers_alone(labse, monkeypatch):
    """Without sentence-transformers, transformers computes the ids and token vectors."""
    pytest.importorskip("transformers")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    report = check(verify.verify(labse))
    assert report.ref.name.startswith("transformers") and report.ok


def test_without_the_reference_stack_says_what_to_install(labse, monkeypatch, capsys):
    for name in ("torch", "transformers", "sentence_transformers"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match="pip install sentence-transformers"):
        verify.verify(labse)
    assert cli.main(["verify", str(labse)]) == 1
    err = capsys.readouterr().err
    print(err)
    assert err.startswith("minisbert: error:") and "pip install sentence-transformers" in err


def test_report_compares_honestly():
    """The comparison itself, on vectors made up here: equal, off by 2e-5, and ids off by one."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal((12, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = [[101, k, 102] for k in range(12)]
    side = lambda vectors, ids=ids: verify.Side("x", "", ids, vectors)  # noqa: E731
    texts = [f"t{k}" for k in range(12)]
    assert verify.Report(texts, side(v), side(v.copy())).ok
    off = v.copy()
    off[4, 2] += 2e-5
    bad = verify.Report(texts, side(v), side(off))
    assert not bad.ok and "#4 't4'" in bad.table()
    other_ids = [list(x) for x in ids]
    other_ids[7][1] = 999
    bad = verify.Report(texts, side(v), side(v, other_ids))
    assert not bad.ok and bad.differing_ids == [7] and "[101, 999, 102]" in bad.table()
