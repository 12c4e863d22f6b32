"""Knowledge tables for the CTR benchmark when the student cannot read every user text on this CPU.

    python -m bench.ctr_vectors user-mean --data PREPARED --knowledge EMB
        writes EMB/user_embeddings.parquet: each user's vector = the mean of the item vectors of their
        TRAIN-split clicks (users.jsonl histories); users without one get no row (zero vector in the model).
    python -m bench.ctr_vectors minilm --data PREPARED -o EMB
        item vectors from the plain sentence encoder all-MiniLM-L6-v2 (the bundled phrase embedder) over
        the same item names `distill embed` reads, in the same table format.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ctr.knowledge import write_user_mean_table
from ground.vectors import ITEM_TABLE, write_table
from ground.files import write_json
from ground import records as R
from kgen.inputs import item_input


def user_mean(data: Path, knowledge: Path) -> int:
    n = write_user_mean_table(knowledge, data / "users.jsonl")
    summary = json.loads((knowledge / "embed_config.json").read_text()) if (knowledge / "embed_config.json").exists() else {}
    summary["users_vector"] = "mean of the item vectors of the user's train-split clicks (ctr.knowledge.write_user_mean_table)"
    summary.setdefault("counts", {})["users"] = n
    write_json(knowledge / "embed_config.json", summary)
    return n


def minilm(data: Path, output: Path) -> int:
    from sentence_transformers import SentenceTransformer

    from kgen.models import resolve_embedder

    items = R.read_records(data / "items.jsonl", "item")
    model = SentenceTransformer(resolve_embedder(None), device="cpu")
    vectors = model.encode([item_input(i) for i in items], batch_size=64, show_progress_bar=True)
    output.mkdir(parents=True, exist_ok=True)
    write_table(output / ITEM_TABLE, [str(i[R.ITEM_ID]) for i in items], np.asarray(vectors, np.float32))
    write_json(output / "embed_config.json", {"model": "all-MiniLM-L6-v2 (sentence-transformers, mean pooling)",
                                                "items": str(data / "items.jsonl"), "dim": int(vectors.shape[1]),
                                                "counts": {"items": len(items)}})
    return len(items)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["user-mean", "minilm"])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--knowledge", "-o", type=Path, required=True)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    n = user_mean(args.data, args.knowledge) if args.command == "user-mean" else minilm(args.data, args.knowledge)
    print(f"{n} vectors -> {args.knowledge}")


if __name__ == "__main__":
    main()
