"""`distill embed --engine ray`: the same batches as one process, encoded by a pool of Ray Data actors.

The texts are cut into the batches a single-process run would encode, and
each batch is one row of the dataset, so every actor sees exactly the
padding a single process sees and the vectors come out bit for bit the same.
"""

from __future__ import annotations

from distill.encode import encode_texts, load_encoder

INDEX, TEXTS, VECTORS = "index", "texts", "vectors"


class EncodeBatch:
    """A Ray Data actor: one copy of the student's body; each row (a whole batch of texts) -> its vectors."""

    def __init__(self, model: str, max_length: int, layer: int, pooling: str):
        self.model, self.tokenizer = load_encoder(model)
        self.max_length, self.layer, self.pooling = max_length, layer, pooling

    def __call__(self, rows: dict) -> dict:
        out = []
        for texts in rows[TEXTS]:
            texts = list(texts)
            out.append(encode_texts(self.model, self.tokenizer, texts, len(texts), self.max_length, "", progress=False,
                                    layer=self.layer, pooling=self.pooling))
        return {INDEX: rows[INDEX], VECTORS: out}


def encode_texts_ray(model: str, texts: list[str], batch_size: int, max_length: int, desc: str,
                     workers: int | None = None, layer: int = -1, pooling: str = "mean"):
    """(N, D) float32 vectors of `texts`, as `encode_texts` gives them, computed on the Ray cluster."""
    import numpy as np
    from tqdm import tqdm

    from kgen.ray_engine import actor_resources, default_workers, start_ray

    ray = start_ray()
    gpus = ray.cluster_resources().get("GPU", 0) >= 1
    workers = workers or default_workers(ray, gpu=gpus)
    chunks = [{INDEX: i, TEXTS: texts[start : start + batch_size]}
              for i, start in enumerate(range(0, len(texts), batch_size))]
    ds = ray.data.from_items(chunks, override_num_blocks=min(len(chunks), 4 * workers)).map_batches(
        EncodeBatch, fn_constructor_kwargs={"model": model, "max_length": max_length, "layer": layer,
                                            "pooling": pooling}, batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=workers), **actor_resources(gpu=gpus))
    by_index = {}
    with tqdm(total=len(chunks), desc=f"{desc} (ray, {workers} workers)", unit="batch", dynamic_ncols=True) as bar:
        for row in ds.iter_rows():
            by_index[int(row[INDEX])] = np.asarray(row[VECTORS], np.float32)
            bar.update(1)
    return np.concatenate([by_index[i] for i in range(len(chunks))])
