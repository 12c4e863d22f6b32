"""The dose-response series of issue 25: a knowledge file with a known share of its phrases replaced.

    python -m bench.knowledge_dose bench/knowledge/ml-1m/items.jsonl.gz --share 0.25 --seed 0 -o DOSE.jsonl.gz

In every ok record, share x n of its n values of each kind (explicit aspect: value entries, implicit entries,
key phrases; rounded up or down at random so that the share holds over the catalogue), chosen at random, are replaced by values of the same kind drawn from *other* records
(never the record's own). Values the teacher copied from its one-shot example (`leaked`) are neither replaced nor
drawn: the knowledge text leaves them out at every share. share 0 is the
teacher's knowledge as it is, 1 is knowledge with nothing of the item left but its input (which the knowledge
text still ends with). Encoded and trained on like the teacher's own (`distill embed --source knowledge`), it
asks whether the CTR model's AUC falls as the knowledge gets worse, which a study over students of unknown
quality cannot. Writes OUT (gzipped JSONL when it ends in .gz) and OUT's manifest (.json): share, seed, counts.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path

from ground import records as R
from ground.files import atomic_writer, write_json

KINDS = (R.EXPLICIT, R.IMPLICIT, R.KEY_PHRASES)


def pools(rows: list[dict]) -> dict[str, list[tuple[int, object]]]:
    """kind -> (record index, value) of every ok record's values that the teacher did not copy."""
    out: dict[str, list[tuple[int, object]]] = {kind: [] for kind in KINDS}
    for n, row in enumerate(rows):
        if row[R.STATUS] != "ok":
            continue
        leaked = set(row.get(R.LEAKED) or [])
        for kind in KINDS:
            out[kind] += [(n, v) for v in row.get(kind) or [] if text_of(v) not in leaked]
    return out


def text_of(value) -> str:
    return value.get("value", "") if isinstance(value, dict) else str(value)


def replaced(rows: list[dict], share: float, seed: int) -> tuple[list[dict], dict[str, int]]:
    """(rows with share x n values of each kind (rounded at random) replaced by other records' values, counts)."""
    if not 0 <= share <= 1:
        raise SystemExit(f"--share must be within [0, 1], got {share}")
    rng = random.Random(seed)
    pool = pools(rows)
    owners = {kind: {n for n, _ in pool[kind]} for kind in KINDS}
    counts = {"values": 0, "replaced": 0, "kept_no_other_record": 0}
    out = []
    for n, row in enumerate(rows):
        row = dict(row)
        if row[R.STATUS] == "ok":
            leaked = set(row.get(R.LEAKED) or [])
            for kind in KINDS:
                values = list(row.get(kind) or [])
                own = [i for i, v in enumerate(values) if text_of(v) not in leaked]  # copied ones: left out anyway
                exact = share * len(own)  # rounded at random, so that the share holds over the catalogue
                chosen = rng.sample(own, int(exact) + (rng.random() < exact - int(exact)))
                if chosen and not owners[kind] - {n}:  # no other record has a value of this kind
                    counts["kept_no_other_record"] += len(chosen)
                    chosen = []
                for i in chosen:
                    while True:  # another record's value
                        owner, value = pool[kind][rng.randrange(len(pool[kind]))]
                        if owner != n:
                            break
                    values[i] = value
                counts["values"] += len(own)
                counts["replaced"] += len(chosen)
                row[kind] = values
        out.append(row)
    return out, counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("knowledge", type=Path, help="Knowledge records (.jsonl or .jsonl.gz).")
    p.add_argument("--share", type=float, required=True, help="Share of each record's values replaced, 0 to 1.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", type=Path, required=True)
    a = p.parse_args()
    rows = R.read_records(a.knowledge, "knowledge")
    out, counts = replaced(rows, a.share, a.seed)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out)
    if a.output.suffix == ".gz":
        a.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.output.with_name(a.output.name + ".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as fh:
            fh.write(lines)
        tmp.replace(a.output)
    else:
        with atomic_writer(a.output) as fh:
            fh.write(lines)
    manifest = {"source": str(a.knowledge), "share": a.share, "seed": a.seed, "records": len(out), **counts}
    write_json(a.output.with_name(a.output.name.split(".")[0] + ".json"), manifest)
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
