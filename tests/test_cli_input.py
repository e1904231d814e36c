"""What a first run of the `minisbert` command meets: which model it uses when none is given,
input that is not text, texts from standard input, the end of an interactive session, and
whether `--help` states the rules the code follows.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from minisbert.textfile import read_texts, split_sentences
from minisbert.errors import InputFileError

from cli_support import EXAMPLE, assert_one_line_error, results, run_cli

DEFAULT = "sentence-transformers/paraphrase-multilingual-mpnet-base-v2"
PROMPT = "User (press q to exit): "


# ---------------------------------------------------------------------------- which model

def test_no_model_and_no_default_lists_the_models_here(tmp_path, minilm_path):
    env = {"MINISBERT_CACHE": str(tmp_path / "cache")}
    proc = run_cli("search", "-i", EXAMPLE, "-p", "x", cwd=tmp_path, env=env)
    assert_one_line_error(proc, "no --model given", DEFAULT, f"minisbert download {DEFAULT}",
                          "There are no models in weights/")

    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "all-MiniLM-L6-v2").symlink_to(minilm_path, target_is_directory=True)
    (tmp_path / "cache" / "someone").mkdir(parents=True)
    (tmp_path / "cache" / "someone" / "mini").symlink_to(minilm_path, target_is_directory=True)
    proc = run_cli("search", "-i", EXAMPLE, "-p", "x", cwd=tmp_path, env=env)
    assert_one_line_error(proc, "no --model given", f"minisbert download {DEFAULT}",
                          "Models here: weights/all-MiniLM-L6-v2, someone/mini",
                          "--model weights/all-MiniLM-L6-v2")
    # The advice works: that --model answers.
    proc = run_cli("search", "-i", EXAMPLE, "-p", "x", "--model", "weights/all-MiniLM-L6-v2",
                   cwd=tmp_path, env=env)
    assert proc.returncode == 0 and len(results(proc.stdout)) == 1, proc.stderr


def test_a_missing_path_is_a_missing_folder_not_a_download(tmp_path, minilm_path):
    env = {"MINISBERT_CACHE": str(tmp_path / "cache")}
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "all-MiniLM-L6-v2").symlink_to(minilm_path, target_is_directory=True)
    for path in ["weights/nope", "./nope", "../nope", str(tmp_path / "nope"), "a/b/c"]:
        proc = run_cli("search", "-i", EXAMPLE, "-p", "x", "--model", path, cwd=tmp_path, env=env)
        err = assert_one_line_error(proc, f"{path}: no such model folder",
                                    "--model weights/all-MiniLM-L6-v2")
        assert "minisbert download" not in err
    # org/name where no folder org/ exists here: a hub name, so the advice is to download it.
    proc = run_cli("search", "-i", EXAMPLE, "-p", "x", "--model", "someone/nope", cwd=tmp_path,
                   env=env)
    assert_one_line_error(proc, "model 'someone/nope' is not here",
                          "minisbert download someone/nope")


# ---------------------------------------------------------------------------- binary input

def test_a_file_of_nul_bytes_is_refused_whatever_the_encoding(tmp_path, minilm_path):
    nuls = tmp_path / "zeros.bin"
    nuls.write_bytes(bytes(4096))  # valid UTF-8, and latin-1, and UTF-16
    for encoding in [[], ["--encoding", "latin-1"], ["--encoding", "utf-16"]]:
        proc = run_cli("search", "-i", nuls, "--model", minilm_path, "-p", "x", *encoding)
        assert_one_line_error(proc, "zeros.bin looks like a binary file", "NUL")
        assert proc.stdout == ""


def test_binary_bytes_are_refused_rather_than_decoded_as_latin1(tmp_path, minilm_path):
    rng = np.random.default_rng(0)
    blob = tmp_path / "photo.jpg"
    blob.write_bytes(rng.integers(0, 256, 8000, dtype=np.uint8).tobytes())
    # No NUL, but control bytes and high bytes, as in compressed data without zeros.
    no_nul = tmp_path / "packed.bin"
    pool = np.r_[1:32, 128:256].astype(np.uint8)
    no_nul.write_bytes(rng.choice(pool, 8000).tobytes())
    for path, reason in [(blob, "NUL"), (no_nul, "control characters")]:
        for encoding in [[], ["--encoding", "latin-1"]]:
            proc = run_cli("search", "-i", path, "--model", minilm_path, "-p", "x", *encoding)
            err = assert_one_line_error(proc, f"{path.name} looks like a binary file", reason)
            assert "--encoding latin-1" not in err  # the old advice, which embedded garbage
            assert proc.stdout == ""


def test_binary_threshold_and_text_that_is_not_binary(tmp_path):
    def read(text: str, **kw):
        path = tmp_path / "t.txt"
        path.write_bytes(text.encode(kw.pop("as_", "utf-8")))
        return read_texts(str(path), **kw)

    # A coloured log: ESC sequences are control characters, but few (about 4 % here).
    log = "\x1b[32mINFO\x1b[0m the server started on port 8080 and is ready\n" * 10
    assert len(read(log)) == 10
    # Just at 10 % control characters: text; just above: binary.
    assert read("\x07" + "a" * 9)  # 1 in 10
    with pytest.raises(InputFileError, match=r"18% of its characters are control characters"):
        read("\x07\x07" + "a" * 9)  # 2 in 11
    # Legacy encodings use the bytes 0x80-0x9F for letters: not binary, and --encoding reads them.
    sjis = "東京は晴れです。ファイルはシフトJISです。\n" * 5
    with pytest.raises(InputFileError, match="not valid utf-8 .* --encoding cp932"):
        read(sjis, as_="cp932")
    assert read(sjis, as_="cp932", encoding="cp932") == [sjis.split("\n")[0]] * 5
    # UTF-16 text: NUL bytes, but no NUL characters once decoded; without --encoding, a hint.
    utf16 = "\ufeff" + "first line\nsecond line\n"  # with the BOM Notepad writes
    assert read(utf16, as_="utf-16-le", encoding="utf-16") == ["first line", "second line"]
    with pytest.raises(InputFileError, match="pass --encoding utf-16"):
        read(utf16, as_="utf-16-le")


# ---------------------------------------------------------------------------- standard input

def test_dash_reads_the_texts_from_standard_input(minilm_path):
    lines = EXAMPLE.read_text(encoding="utf-8")
    question = "How fast is the model on the phone?"
    piped = run_cli("search", "-i", "-", "--model", minilm_path, "-p", question, "-k", "3",
                    stdin=lines)
    from_file = run_cli("search", "-i", EXAMPLE, "--model", minilm_path, "-p", question, "-k", "3")
    print(piped.stdout)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == from_file.stdout and len(results(piped.stdout)) == 3
    # Standard input cannot carry both the texts and the questions.
    proc = run_cli("search", "-i", "-", "--model", minilm_path, stdin=lines)
    assert proc.returncode == 2 and "pass the question with -p" in proc.stderr
    proc = run_cli("search", "-i", "-", "--model", minilm_path, "-p", "x", stdin="\0\0\0")
    assert_one_line_error(proc, "standard input looks like a binary file")


@pytest.mark.parametrize("ending", ["q\n", "ｑ\n", "q", ""], ids=["q", "fullwidth-q",
                                                                 "q-without-newline", "eof"])
def test_piped_session_ends_its_last_prompt_line(minilm_path, ending):
    """Through a pipe nothing echoes the typed "q" and Enter, so the command ends the line."""
    proc = run_cli("search", "-i", EXAMPLE, "--model", minilm_path,
                   stdin="Is the library open?\n" + ending)
    print(repr(proc.stdout[-80:]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(PROMPT + "\n") and proc.stdout.count(PROMPT) == 2


# ---------------------------------------------------------------------------- --help

def test_search_help_states_the_sentence_and_index_rules():
    proc = run_cli("search", "--help")
    help_text = " ".join(proc.stdout.split())
    print(proc.stdout)
    split = re.search(r"--split \{lines,sentences\} (.*?) --encoding", help_text).group(1)
    assert "after 。．！？ and after . ! ? followed by a space or the line's end" in split
    assert "never runs across lines" in split
    index = re.search(r"--index FOLDER (.*?) --model M", help_text).group(1)
    assert "the model that made it" in index and "any other model is refused" in index
    # What the help says is what split_sentences does.
    assert split_sentences("Pi is 3.14 on example.com. Really?Yes! 東京は晴れ。大阪") == \
        ["Pi is 3.14 on example.com.", "Really?Yes!", "東京は晴れ。", "大阪"]
    assert split_sentences('He said "stop." Then left') == ['He said "stop."', "Then left"]
