"""Print what each stage of a tokenizer.json pipeline makes of a text.

    python scripts/explain_tokenizer.py MODEL_FOLDER "Some text"

The folder's tokenizer.json is read by minisbert's own front end (minisbert/tokenizer/
tokenizer_json.py); for each stage, its output: the pieces after added tokens are cut out and
the rest normalized, the words after pre-tokenizing, each word's ids from the model (with the
vocabulary's spelling of each id), and the ids after the post-processor. docs/how-it-works.md
shows its output for WordPiece, BPE and Unigram.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minisbert.tokenizer.tokenizer_json import TokenizerJson  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("text")
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()
    tok = TokenizerJson(args.folder, {}, args.max_length)
    spelling = {i: t for t, i in {**tok.model.vocab, **tok.added_ids}.items()}
    for stage, value in tok.explain(args.text):
        if stage == "model":
            value = [[(spelling.get(i), i) for i in ids] for ids in value]
        print(f"{stage:>26}: {value}")


if __name__ == "__main__":
    main()
