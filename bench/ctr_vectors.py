"""Knowledge tables for the CTR benchmark: plain-encoder vectors, a user-mean table, and the controls.

    python -m bench.ctr_vectors minilm --data PREPARED -o EMB
        the raw-text control: `distill embed --source input --encoder all-minilm-l6-v2` over PREPARED's items
        (the bundled sentence encoder over the item inputs, no LLM; raw pooled vectors, not unit length).
    python -m bench.ctr_vectors user-mean --data PREPARED --knowledge EMB
        EMB/user_embeddings.parquet: each user's vector = the mean of the item vectors of their users.jsonl
        history, a snapshot at the user's time (T0, or with `ctr prepare --late-snapshot` the end of validation);
        `ctr train --user-source table` feeds it to their rows after that time only. (The default user level,
        --user-source history, needs no table.)
    python -m bench.ctr_vectors shuffle --knowledge EMB -o OUT [--seed 0]
        negative control: the same vectors, permuted across the item ids (and no user table).
    python -m bench.ctr_vectors shuffle-users --knowledge EMB -o OUT [--seed 0]
        negative control of a user table (`distill embed --users`, say over the teacher's user knowledge): its
        user vectors permuted across the users of the same snapshot time (per-user times, `--snapshot-clicks`: each
        user gets the vector of a random one of the 50 users whose snapshots precede theirs), so each user keeps
        their time and a row still sees only a vector made before it; its item vectors kept.
    python -m bench.ctr_vectors random --data PREPARED -o OUT [--dim 64] [--seed 0]
        negative control: a N(0, 1) vector per item; the user level built from them (the history mean) is a
        random-projection sketch of the history: collaborative signal, no knowledge.
    python -m bench.ctr_vectors compare --knowledge EMB --other EMB2 [--k 10]
        how alike two tables are, item by item (say KAR vectors and the raw-text control's): the mean cosine of an
        item's two vectors beside that of random pairs, how often an item's nearest EMB2 vector is its own, and
        the overlap of each item's k nearest neighbours in the two spaces. Printed, nothing written.
    python -m bench.ctr_vectors oracle --data PREPARED -o OUT [--dim 8] [--seed 0]
        positive control, never a feature: dimension 0 is the item's click rate over ALL splits (test labels
        included: a deliberate leak), the other dimensions N(0, 1) noise. MSD must clearly beat its backbone
        with it, most on rare items; a fusion that loses it drowns the target.
    python -m bench.ctr_vectors coclick --data PREPARED -o OUT [--dim 128]
        positive control, never a feature: each item's factor of the item x user click matrix over ALL splits (test
        clicks included: a deliberate leak). Valid where the click-rate oracle is void: with popularity-matched
        negatives (Online Retail) an item's click rate is nearly constant, but whether the user who is scored
        clicked the target beside their history is not (test AUC of cos(history mean, target) alone, Online
        Retail: 0.658 with these factors, 0.596 with factors of the train clicks only; ML-1M 0.703 / 0.674).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ctr.user_table import table_user_times, write_user_mean_table
from ground import records as R
from ground.files import write_json
from ground.snapshots import times_summary
from ground.vectors import ITEM_TABLE, USER_TABLE, read_table, write_table


def user_mean(data: Path, knowledge: Path) -> int:
    return write_user_mean_table(knowledge, data / "users.jsonl")


def item_ids(data: Path) -> list[str]:
    return [str(i[R.ITEM_ID]) for i in R.read_records(data / "items.jsonl", "item")]


def write_control(output: Path, ids: list[str], vectors: np.ndarray, what: str,
                  users: tuple[list[str], np.ndarray, list[int]] | None = None) -> int:
    """A control's item table (and user table: ids, vectors and each one's snapshot time) and its embed_config."""
    output.mkdir(parents=True, exist_ok=True)
    write_table(output / ITEM_TABLE, ids, np.asarray(vectors, np.float32))
    counts, times = {"items": len(ids)}, None
    if users is not None:
        write_table(output / USER_TABLE, users[0], np.asarray(users[1], np.float32), as_of=users[2])
        counts["users"], times = len(users[0]), dict(zip(users[0], users[2]))
    write_json(output / "embed_config.json", {"model": f"control: {what}", "dim": int(vectors.shape[1]),
                                              "counts": counts, **times_summary(times)})
    return len(ids)


def shuffle(knowledge: Path, output: Path, seed: int) -> int:
    ids, vectors = read_table(knowledge / ITEM_TABLE)
    order = np.random.default_rng(seed).permutation(len(ids))
    return write_control(output, list(ids), vectors[order],
                         f"the vectors of {knowledge} permuted across the items (seed {seed})")


def permute_within(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of range(len(groups)) that moves each position only among positions of the same group."""
    order = np.arange(len(groups))
    for group in np.unique(groups):
        where = np.flatnonzero(groups == group)
        order[where] = rng.permutation(where)
    return order


def earlier_donors(times: np.ndarray, rng: np.random.Generator, window: int = 50) -> np.ndarray:
    """donor[i]: a random one of the `window` users whose snapshot time precedes user i's (ties in random order);
    -1 for the first user, who has none. A donor's time is never later than its recipient's."""
    rank_to_user = np.lexsort((rng.random(len(times)), times))  # by time, ties shuffled
    donor = np.full(len(times), -1)
    for r in range(1, len(times)):
        donor[rank_to_user[r]] = rank_to_user[rng.integers(max(0, r - window), r)]
    return donor


def shuffle_users(knowledge: Path, output: Path, seed: int) -> int:
    """The negative control of a user table: each user gets another user's vector, the item table kept as is.

    Each user keeps their own snapshot time, so the control feeds exactly the rows the table feeds, and gets a
    vector made no later than their own (one moved to a user of an earlier time would reach rows before the events
    it was made from). Where most users share a time (T0, --late-snapshot) the vectors are permuted among the users
    of the same time; where nearly every user has their own (--snapshot-clicks), that would leave the table as it
    is, so each user gets the vector of a random one of the 50 users whose snapshots precede theirs (the first user
    a zero vector)."""
    ids, vectors = read_table(knowledge / USER_TABLE)
    times = table_user_times(knowledge)
    if times is None:
        raise SystemExit(f"{knowledge / 'embed_config.json'}: no snapshot time recorded for its user table")
    as_of = np.asarray([times[u] for u in ids])
    _, inverse, sizes = np.unique(as_of, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    if 2 * int((sizes[inverse] > 1).sum()) >= len(ids):
        moved, how = vectors[permute_within(as_of, rng)], "permuted among the users of the same snapshot time"
    else:
        donor = earlier_donors(as_of, rng)
        moved = np.where((donor >= 0)[:, None], vectors[np.maximum(donor, 0)], 0).astype(vectors.dtype)
        how = "each replaced by that of a random one of the 50 users whose snapshots precede theirs"
    item_ids_, items = read_table(knowledge / ITEM_TABLE)
    write_control(output, list(item_ids_), items, f"the user vectors of {knowledge} {how} (seed {seed}), its item "
                  "vectors as they are", users=(list(ids), moved, as_of.tolist()))
    return len(ids)


def random_vectors(data: Path, output: Path, dim: int, seed: int) -> int:
    ids = item_ids(data)
    vectors = np.random.default_rng(seed).normal(size=(len(ids), dim))
    return write_control(output, ids, vectors, f"N(0, 1) vectors of dim {dim} (seed {seed})")


def oracle(data: Path, output: Path, dim: int, seed: int) -> int:
    import pandas as pd

    samples = pd.read_parquet(data / "samples.parquet", columns=[R.ITEM_ID, R.LABEL])
    rate = samples.groupby(R.ITEM_ID)[R.LABEL].mean()
    ids = item_ids(data)
    vectors = np.random.default_rng(seed).normal(size=(len(ids), dim))
    vectors[:, 0] = rate.reindex(ids).fillna(rate.mean()).to_numpy()
    return write_control(output, ids, vectors, "ORACLE (positive control, a deliberate leak): dimension 0 = the "
                         f"item's click rate over all splits, {dim - 1} N(0, 1) dimensions (seed {seed})")


def coclick(data: Path, output: Path, dim: int) -> int:
    """Positive control (a deliberate leak): each item's factor of the item x user click matrix over ALL splits.

    Rows (items) L2-normalised, a truncated SVD of rank `dim`, factors U * S at unit length. Two items the same
    user clicks share that user's column, test clicks included, so a test target lies close to the history of
    the user who clicked it: signal the backbone cannot learn from train, and one that popularity-matched
    negatives (Online Retail) do not void, unlike the click-rate oracle. Items without a click get a zero vector.
    """
    import pandas as pd
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    samples = pd.read_parquet(data / "samples.parquet", columns=[R.USER_ID, R.ITEM_ID, R.LABEL])
    clicks = samples[samples[R.LABEL] == 1].drop_duplicates([R.ITEM_ID, R.USER_ID])
    ids = item_ids(data)
    rows = pd.Index(ids).get_indexer(clicks[R.ITEM_ID].astype(str))
    if (rows < 0).any():
        raise SystemExit(f"{data / 'samples.parquet'}: clicked items missing from {data / 'items.jsonl'}")
    users = pd.Index(clicks[R.USER_ID].unique())
    if min(len(ids), len(users)) <= dim:
        raise SystemExit(f"coclick: rank {dim} needs more than {dim} items and clicking users "
                         f"({len(ids)} items, {len(users)} users)")
    matrix = sp.csr_matrix((np.ones(len(clicks)), (rows, users.get_indexer(clicks[R.USER_ID]))),
                           shape=(len(ids), len(users)))
    norms = np.sqrt(np.asarray(matrix.sum(axis=1)).ravel())  # binary entries: the row's L2 norm
    matrix = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ matrix
    u, s, _ = svds(matrix, k=dim, random_state=0)
    factors = u * s
    factors /= np.clip(np.linalg.norm(factors, axis=1, keepdims=True), 1e-12, None)
    factors[norms == 0] = 0.0
    return write_control(output, ids, factors, "ORACLE (positive control, a deliberate leak): each item's rank-"
                         f"{dim} factor of the item x user click matrix over ALL splits, test clicks included")


def compare(a: Path, b: Path, k: int, seed: int) -> dict:
    """Item-by-item likeness of two item tables, on the items both hold."""
    tables = [dict(zip(*read_table(folder / ITEM_TABLE))) for folder in (a, b)]
    ids = sorted(set(tables[0]) & set(tables[1]))
    if len(ids) <= k:
        raise SystemExit(f"{a} and {b} share {len(ids)} items: too few to compare")
    unit = [np.stack([t[i] for i in ids]) for t in tables]
    unit = [v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) for v in unit]
    own = (unit[0] * unit[1]).sum(1)
    other = (unit[0] * unit[1][np.random.default_rng(seed).permutation(len(ids))]).sum(1)
    nearest_own = float(((unit[1] @ unit[0].T).argmax(1) == np.arange(len(ids))).mean())
    near = [np.argsort(-(v @ v.T), axis=1)[:, 1 : k + 1] for v in unit]
    overlap = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(*near)]))
    return {"items": len(ids), "cosine_own_mean": round(float(own.mean()), 4),
            "cosine_own_p10_p90": [round(float(np.percentile(own, q)), 4) for q in (10, 90)],
            "cosine_random_pair_mean": round(float(other.mean()), 4), "nearest_is_own": round(nearest_own, 4),
            f"top{k}_neighbour_overlap": round(overlap, 4)}


def minilm(data: Path, output: Path) -> int:
    from distill.embed import EmbedConfig, embed_tables
    from kgen.models import EMBEDDED_EMBEDDER

    summary = embed_tables(EmbedConfig(items=data / "items.jsonl", output=output, encoder=EMBEDDED_EMBEDDER,
                                       batch_size=64))
    return summary["counts"]["items"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["user-mean", "minilm", "shuffle", "shuffle-users", "random", "oracle",
                                       "coclick", "compare"])
    p.add_argument("--data", type=Path, help="The prepared folder (user-mean, minilm, random, oracle).")
    p.add_argument("--knowledge", type=Path, help="The tables to read (user-mean: also written; shuffle).")
    p.add_argument("--output", "-o", type=Path, help="Folder to write (minilm and the controls).")
    p.add_argument("--dim", type=int, default=None, help="random: 64; oracle: 8; coclick: 128.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--other", type=Path, help="compare: the second table's folder.")
    p.add_argument("--k", type=int, default=10, help="compare: neighbours per item.")
    args = p.parse_args()
    if args.command == "compare":
        print(json.dumps({"a": str(args.knowledge), "b": str(args.other), **compare(args.knowledge, args.other,
                                                                                    args.k, args.seed)}))
        return
    import torch

    torch.set_num_threads(1)
    if args.command == "user-mean":
        n = user_mean(args.data, args.knowledge)
    elif args.command == "minilm":
        n = minilm(args.data, args.output)
    elif args.command == "shuffle":
        n = shuffle(args.knowledge, args.output, args.seed)
    elif args.command == "shuffle-users":
        n = shuffle_users(args.knowledge, args.output, args.seed)
    elif args.command == "coclick":
        n = coclick(args.data, args.output, args.dim or 128)
    elif args.command == "random":
        n = random_vectors(args.data, args.output, args.dim or 64, args.seed)
    else:
        n = oracle(args.data, args.output, args.dim or 8, args.seed)
    print(json.dumps({"command": args.command, "vectors": n}))


if __name__ == "__main__":
    main()
