"""Embed a few sentences and print how similar each pair is (the README's first example).

    python scripts/similarities.py [MODEL_FOLDER]
"""

import sys

import minisbert

folder = sys.argv[1] if len(sys.argv) > 1 else "weights/all-MiniLM-L6-v2"
model = minisbert.load(folder)
sentences = [
    "A man is eating food.",
    "Someone is having a meal.",
    "The new movie is awesome.",
    "The film was great fun to watch.",
    "A cheetah chases its prey across a field.",
]
vectors = model.encode(sentences, normalize_embeddings=True)  # [5, 384]
scores = minisbert.cos_sim(vectors, vectors)  # [5, 5]

print(model)
for i in range(len(sentences)):
    for j in range(i + 1, len(sentences)):
        print(f"{scores[i, j]:6.3f}  {sentences[i]:<42} {sentences[j]}")
