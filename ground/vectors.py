"""The vector-table format: what `distill embed` writes and `ctr` reads (one parquet file per level)."""

from __future__ import annotations

from pathlib import Path

from ground import records as R

ITEM_TABLE = "item_embeddings.parquet"
USER_TABLE = "user_embeddings.parquet"
VECTOR = "vector"


def mean_pool(hidden, mask):
    """(B, T, D) hidden states, (B, T) attention mask -> (B, D) mean over the real tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def write_table(path: Path, ids: list[str], vectors, as_of: list[int] | None = None) -> None:
    """A parquet table: id (string), vector (list<float32>); a user table also history_as_of (int64): the snapshot
    time of the history each vector was made from (ground.snapshots)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = vectors.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
    columns = {R.ID: pa.array(ids, pa.string()), VECTOR: column.cast(pa.list_(pa.float32()))}
    if as_of is not None:
        columns[R.HISTORY_AS_OF] = pa.array(as_of, pa.int64())
    table = pa.table(columns)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def read_table(path: str | Path) -> tuple[list[str], object]:
    """(ids, (N, D) float32 array) from a table written by `distill embed`."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    vectors = table.column(VECTOR).combine_chunks()
    dim = len(vectors[0]) if len(vectors) else 0
    flat = vectors.flatten().to_numpy(zero_copy_only=False)
    return table.column(R.ID).to_pylist(), np.asarray(flat, np.float32).reshape(len(vectors), dim)


def read_times(path: str | Path) -> dict[str, int] | None:
    """id -> snapshot time from a user table's history_as_of column; None for a table without one."""
    import pyarrow.parquet as pq

    if R.HISTORY_AS_OF not in pq.read_schema(path).names:
        return None
    table = pq.read_table(path, columns=[R.ID, R.HISTORY_AS_OF])
    return dict(zip(table.column(R.ID).to_pylist(), table.column(R.HISTORY_AS_OF).to_pylist()))
