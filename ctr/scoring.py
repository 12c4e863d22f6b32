"""A trained run folder loaded for serving, and one request -> a batch -> scores.

A request names a user, their recent behaviour (item ids or item records) and the
candidates. Its distinct items get *request-local* keys 1..n: the ID features of an
item come from the catalogue (or, for an item the model never saw, from its record),
and for MSD its semantic vector from the vector cache (`ctr.cache`), computed on a miss by
the encoder that made the run's tables, from the same text (`ctr.encoders`: the student, or
a sentence-transformers model over the input or the knowledge text). The model's forward
then runs unchanged on those local tables.

Where the user's semantic vector comes from follows the run's `user_source`: "history"
(the default) is the mean of the request's own history items' vectors, computed by the
model itself as in training. "table" follows how the run's user table was made (the
folder's embed_config.json): the tables' encoder over the user's text or the mean of their
items' vectors, built from the user's stored record (users.jsonl: a snapshot at the user's time, T0, with
--late-snapshot the end of validation, or with --snapshot-clicks their K-th click; a request comes after every
snapshot, and a user without a record gets the zero vector, as in the table), exactly as the table the
model was trained with.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ctr.adapted import RequestPath, item_parts, model_version
from ctr.cache import LRU, CacheStats, KeyedRows, RedisStore, VectorCache
from ctr.data import Batch
from ctr.encoders import (EMBED_CONFIG, RequestError, SentenceEncoder, StudentEncoder, TableTexts, read_embed_config,
                          table_encoder)
from ctr.runs import load_run, read_config
from ctr.features import UNKNOWN, Features, encode
from ctr.serve_config import ServeConfig
from ground.vectors import ITEM_TABLE, USER_TABLE, read_table
from ground.errors import ConfigError, RecordError
from ground import records as R
from kgen.inputs import item_input


class Local(NamedTuple):
    """One distinct item of a request."""

    item_id: str
    record: dict
    text: str  # what its vector is made from (ctr.encoders.TableTexts: its input, or its knowledge and input)
    key: str  # its vector's cache key ("" when the model reads no vectors)
    adapted_key: str  # its pre-computed row's cache key under the model's version ("" without one)
    catalogue: int  # its catalogue key (ID features from the catalogue), 0 when outside it (read from the record)


class GivenVectors(nn.Module):
    """Stands in for MSD's vector table: the current request's item and user vectors, by local key."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.item_rows = torch.zeros(1, dim)  # (>= n + 1, Dk), row 0 = padding, rows 1..n the request's items
        self.user_rows = torch.zeros(2, dim)  # (2, Dk), row 1 = the request's user

    def item_block(self, n: int) -> np.ndarray:
        """(n, Dk) writable view of rows 1..n; the rows are kept between requests and enlarged when needed."""
        if len(self.item_rows) < n + 1:
            self.item_rows = torch.zeros(max(n + 1, 2 * len(self.item_rows)), self.dim)
        return self.item_rows.numpy()[1 : n + 1]

    def items(self, keys: torch.Tensor) -> torch.Tensor:
        return self.item_rows[keys]

    def users(self, keys: torch.Tensor) -> torch.Tensor:
        return self.user_rows[keys]


def user_mode(knowledge: Path) -> tuple[str, int]:
    """How the run's user vectors were made: ("encoded", max_history): the tables' encoder over each user's text
    (`distill embed --users`), ("mean", 0): the mean of the user's items' vectors, or ("none", 0)."""
    if not (knowledge / USER_TABLE).exists():
        return "none", 0
    embed = read_embed_config(knowledge)
    if "users_vector" in embed:  # bench/ctr_vectors.py user-mean
        return "mean", 0
    if embed.get("users"):
        return "encoded", int(embed.get("max_history", 20))
    raise RecordError(f"{knowledge / EMBED_CONFIG}: cannot tell how {USER_TABLE} was made "
                        "(neither `distill embed --users` nor a user-mean table)")


@dataclass(kw_only=True)
class Knowledge:
    """MSD's serving side: the encoder of the run's tables, their text rule, the cache and the user-vector rule."""

    encoder: StudentEncoder | SentenceEncoder
    texts: TableTexts
    cache: VectorCache
    adapted: VectorCache | None  # rows of `ctr.adapted.item_parts` under the model's version (item_path "adapted")
    user_mode: str
    user_max_history: int
    user_level: bool
    # (mean, std) per dimension when the run z-scored its tables (knowledge.standardize): the cache holds the
    # student's raw vectors, shared by every run of that student; each run's scaling is applied after it
    item_stats: tuple[np.ndarray, np.ndarray] | None = None
    user_stats: tuple[np.ndarray, np.ndarray] | None = None


def table_stats(knowledge: Path, data, train_items, users: bool) -> tuple[tuple | None, tuple | None]:
    """The per-dimension (mean, std) that TableVectors used: items over the train items, users over the table's
    users with a snapshot inside the train window."""
    from ctr.knowledge import aligned_table, standard_stats
    from ctr.user_table import train_window_users, user_times

    def stats(vectors, fit=None):
        present = vectors.abs().sum(1) > 0
        rows = present if fit is None else present & fit
        if int(rows.sum()) < 2:
            return None
        return tuple(t.numpy() for t in standard_stats(vectors, rows))

    items = stats(aligned_table(knowledge / ITEM_TABLE, data.item_ids)[0], train_items)
    table = users and (knowledge / USER_TABLE).exists()
    fit_users = train_window_users(user_times(knowledge, data), data) if table else None
    return items, stats(aligned_table(knowledge / USER_TABLE, data.user_ids)[0], fit_users) if table else None


def load_knowledge(run: dict, config: ServeConfig, data, catalogue) -> Knowledge:
    """The tables' encoder (a student, the tables' own unless --student, or a sentence-transformers model), its
    text rule, its version, and the two-level cache."""
    knowledge = Path(run["knowledge"])
    encoder, texts = table_encoder(knowledge, config.student, config.encode_batch_size)
    redis = RedisStore(config.redis, config.redis_timeout_s, config.redis_retry_s) if config.redis else None
    cache = VectorCache(version=encoder.version, codec=config.codec, lru_size=config.lru_size, redis=redis)
    # float32: a row is the model's own output from rounded raw vectors, so it adds no rounding of its own
    adapted = (VectorCache(version=model_version(config.model, encoder.version, config.codec), codec="float32",
                           lru_size=config.lru_size, redis=redis) if config.item_path == "adapted" else None)
    # the user vector: from the request's own history inside the model ("history"), or the run's user table
    table_users = bool(run.get("user_level", True)) and run.get("user_source") == "table"
    mode, max_history = user_mode(knowledge) if table_users else ("none", 0)
    item_stats, user_stats = (table_stats(knowledge, data, catalogue.item_counts > 0, table_users)
                              if run.get("standardize_vectors", True) else (None, None))
    return Knowledge(encoder=encoder, texts=texts, cache=cache, adapted=adapted, user_mode=mode,
                     user_max_history=max_history, user_level=table_users, item_stats=item_stats, user_stats=user_stats)


def user_field_rows(data, features: Features) -> dict[str, np.ndarray]:
    """user id -> (Fu,) vocabulary ids of user_id and the user fields, from the user's latest sample."""
    last = data.samples.drop_duplicates(R.USER_ID, keep="last")
    ids = np.stack([encode(last[f].to_numpy(), features.vocabs[f]) for f in features.user_fields], axis=1)
    return dict(zip(last[R.USER_ID].astype(str), ids))


class Served:
    """A run folder ready to score requests; one request at a time through the model (a lock)."""

    def __init__(self, config: ServeConfig):
        model_dir = Path(config.model)
        if read_config(model_dir).lora:
            raise RecordError(f"{model_dir}: serving a --lora MSD run is not supported (train it on cached tables)")
        loaded = load_run(model_dir)  # an ELEC run: its vanilla network, no student, no cache
        run, data = loaded.config.to_dict(), loaded.data
        self.features, self.catalogue, self.max_history = loaded.features, loaded.catalogue, loaded.max_history
        self.model = loaded.model.eval()
        self.items = {str(r[R.ITEM_ID]): r for r in R.read_records(data.folder / "items.jsonl", "item")}
        self.item_key = {item_id: key for key, item_id in enumerate(data.item_ids, start=1)}
        self.users = ({str(r[R.USER_ID]): r for r in R.read_records(data.folder / "users.jsonl", "user")}
                      if (data.folder / "users.jsonl").exists() else {})
        self.user_rows = user_field_rows(data, self.features)
        self.knowledge = load_knowledge(run, config, data, loaded.catalogue) if hasattr(self.model, "vectors") else None
        if self.knowledge is not None:
            self.model.vectors = GivenVectors(self.model.vectors.dim)
        self.request_path = RequestPath(self.model) if self.knowledge and self.knowledge.adapted else None
        # catalogue items' rows as one dense table when the in-process level may hold the whole catalogue
        whole = self.request_path is not None and config.lru_size >= len(data.item_ids)
        self.row_memo = KeyedRows(len(data.item_ids) + 1) if whole else None
        self.tables = [m for m in self.model.modules() if "item_table" in dict(m.named_buffers(recurse=False))]
        self.name, self.lock = str(run.get("model")), threading.Lock()
        self.item_fields = self.catalogue.item_table.numpy()  # (K + 1, Fi) by catalogue key
        self.known: dict[str, Local] = {}  # catalogue items met so far, text and cache key built once
        self.user_memo = LRU(config.lru_size if self.knowledge else 0)  # user id -> scaled semantic vector
        self.table_rows: torch.Tensor | None = None  # the models' item_table: the current request's rows

    def known_item(self, item_id: str) -> Local:
        """A catalogue item as a request uses it; its text and cache key are built once, on first use."""
        item = self.known.get(item_id)
        if item is None:
            record = self.items.get(item_id)
            if record is None:
                raise RequestError(f"item {item_id!r} is unknown to this model: send its record "
                                   '({"item_id", "name", ...}) instead of the id')
            item = self.known[item_id] = self.local(item_id, record)
        return item

    def local(self, item_id: str, record: dict) -> Local:
        kn = self.knowledge
        text = kn.texts.item_text(item_id, record, record is self.items.get(item_id)) if kn else item_input(record)
        return Local(item_id=item_id, record=record, text=text, catalogue=self.item_key.get(item_id, 0),
                     key=kn.cache.key("i", text) if kn else "",
                     adapted_key=kn.adapted.key("a", text) if kn and kn.adapted else "")

    def local_items(self, entries: list) -> tuple[list[int], list[Local], bool]:
        """Each entry's request-local key (1..n), the n distinct items (an id, or an id with its text), and
        whether any entry was a record (a record under a known id may carry another text than the catalogue's)."""
        local: dict[str | tuple[str, str], int] = {}
        items: list[Local] = []
        keys, records = [], False
        for entry in entries:
            if isinstance(entry, dict):
                item, records = self.local(str(entry[R.ITEM_ID]), entry), True
                mark: str | tuple[str, str] = (item.item_id, item.text)
            else:
                item, mark = self.known_item(entry), entry
            key = local.setdefault(mark, len(items) + 1)
            if key > len(items):
                items.append(item)
            items[key - 1] = item  # the last record of an (id, text) wins
            keys.append(key)
        return keys, items, records

    def id_table(self, items: list[Local], catalogue: np.ndarray) -> np.ndarray:
        """(n + 1, Fi) ID-feature ids by local key (row 0 padding): one gather from the catalogue, records apart.

        catalogue (n,): each item's catalogue key, 0 outside it."""
        table = np.zeros((len(items) + 1, self.item_fields.shape[1]), np.int64)
        table[1:] = self.item_fields[catalogue]
        for n in np.flatnonzero(catalogue == 0):
            table[n + 1] = self.record_row(items[n].item_id, items[n].record)
        return table

    def record_row(self, item_id: str, record: dict) -> np.ndarray:
        """(Fi,) ID-feature ids of an item outside the catalogue, read from its record (absent -> unknown)."""
        attributes = record.get(R.ATTRIBUTES) or {}
        values = [item_id] + [record.get(f, attributes.get(f)) for f in self.features.item_fields[1:]]
        return np.array([encode([v], self.features.vocabs[f])[0] if v is not None else UNKNOWN
                         for f, v in zip(self.features.item_fields, values)], np.int64)

    def user_row(self, user_id: str, overrides: dict[str, str] | None) -> np.ndarray:
        """(Fu,) user ID-feature ids: stored ones, with the request's field values on top."""
        row = self.user_rows.get(user_id)
        row = row.copy() if row is not None else np.array([encode([user_id], self.features.vocabs[R.USER_ID])[0]]
                                                            + [UNKNOWN] * (len(self.features.user_fields) - 1))
        for name, value in (overrides or {}).items():
            if name not in self.features.user_fields[1:]:
                raise RequestError(f"user_features: unknown field {name!r}; known: {self.features.user_fields[1:]}")
            row[self.features.user_fields.index(name)] = encode([value], self.features.vocabs[name])[0]
        return row

    def score(self, user_id: str, history: list, candidates: list, user_features: dict | None = None) -> dict:
        """Click probabilities of the candidates, in order, and where the request's vectors came from."""
        keys, items, records = self.local_items(history[-self.max_history:] + candidates)
        keys = np.array(keys, np.int64)  # torch.tensor of a list costs ~25 us, this and a view ~5
        hist, cand = keys[: len(keys) - len(candidates)], keys[len(keys) - len(candidates):]
        catalogue = np.array([item.catalogue for item in items], np.int64)  # (n,) 0 outside the catalogue
        table = self.id_table(items, catalogue)
        n = len(cand)
        # Every row shares the user and the history: expanded views, not n copies.
        batch = Batch(user=torch.from_numpy(self.user_row(user_id, user_features)).expand(n, -1),
                      user_key=torch.ones(n, dtype=torch.long), item=torch.from_numpy(cand),
                      history=torch.from_numpy(hist if len(hist) else np.zeros(1, np.int64))[None].expand(n, -1),
                      label=torch.zeros(n),
                      ts=torch.full((n,), int(time.time()), dtype=torch.long))  # a request is after any snapshot
        with self.lock:
            self.set_table(table)
            with torch.inference_mode():
                logits, stats = self.logits(items, user_id, batch, keys, None if records else catalogue)
            scores = torch.sigmoid(logits).tolist()
        return {"scores": scores, "cache": stats}

    def logits(self, items: list[Local], user_id: str, batch: Batch, keys: np.ndarray,
               catalogue: np.ndarray | None) -> tuple[torch.Tensor, dict | None]:
        """(n,) the model's logits for the request and its cache counts (None for a model without vectors).

        keys (L + n,): the request-local key of each history entry, then of each candidate; catalogue (m,): the
        items' catalogue keys when every item is as the catalogue describes it, else None."""
        if self.knowledge is not None and self.knowledge.adapted is not None:
            return self.adapted_logits(items, user_id, batch, keys, catalogue)
        stats = self.set_vectors(items, user_id) if self.knowledge else None
        return self.model(batch), stats

    def adapted_logits(self, items: list[Local], user_id: str, batch: Batch, keys: np.ndarray,
                       catalogue: np.ndarray | None) -> tuple[torch.Tensor, dict]:
        """MSD's logits from its items' pre-computed rows (`ctr.adapted`): only the request's part is computed.

        The rows of the request's entries (L + n, W) are one gather: from the dense table of kept catalogue rows
        when it holds every item, else from the items' rows by local key."""
        rows = (self.row_memo.take(catalogue[keys - 1])
                if self.row_memo is not None and catalogue is not None else None)
        if rows is not None:
            stats = CacheStats(lru=len(items))
        else:
            parts, stats = self.adapted_rows(items)
            rows = np.take(parts, keys - 1, axis=0)
        user = None
        if self.model.user_level and not self.request_path.layout.user_hidden:  # the user level reads a table
            vector, user_stats = self.user_vector(user_id)
            stats.add(user_stats)
            user = torch.from_numpy(vector)
        split = len(keys) - len(batch.item)  # the history's entries, then the candidates
        return self.request_path(rows[:split], rows[split:], batch, user), stats.as_dict()

    def adapted_rows(self, items: list[Local]) -> tuple[np.ndarray, CacheStats]:
        """(m, W) the items' rows in order (local key k at k - 1): LRU, Redis, else from their raw vectors.

        A miss is computed from the raw vector (itself from the cache or the student) and written back; the
        counts say where each item's vector finally came from (a row made from a Redis hit counts as a hit)."""
        kn, raw_stats = self.knowledge, CacheStats()

        def compute(texts: list[str]) -> np.ndarray:
            raw, stats = kn.cache.get("i", texts, kn.encoder)
            raw_stats.add(stats)
            scaled_raw = torch.from_numpy(scaled(raw, kn.item_stats))
            return item_parts(self.model, scaled_raw).numpy()

        parts, stats = kn.adapted.get("a", [item.text for item in items], compute,
                                      keys=[item.adapted_key for item in items])
        if self.row_memo is not None:  # only an item as the catalogue describes it (a record may carry another text)
            self.row_memo.put(np.array([item.catalogue if self.known.get(item.item_id) is item else 0
                                        for item in items], np.int64), parts)
        return parts, CacheStats(lru=stats.lru + raw_stats.lru, redis=stats.redis + raw_stats.redis,
                                 computed=raw_stats.computed, redis_writes=stats.redis_writes + raw_stats.redis_writes)

    def set_table(self, table: np.ndarray) -> None:
        """Write the request's ID table into the models' item_table buffer (one tensor, enlarged when needed)."""
        if self.table_rows is None or len(self.table_rows) < len(table):
            size = max(len(table), 2 * (0 if self.table_rows is None else len(self.table_rows)))
            self.table_rows = torch.zeros(size, table.shape[1], dtype=torch.long)
            for module in self.tables:
                module.item_table = self.table_rows
        self.table_rows.numpy()[: len(table)] = table

    def set_vectors(self, items: list[Local], user_id: str) -> dict:
        """Fill GivenVectors with the request's item vectors (row k = local key k) and its user's vector."""
        kn, given = self.knowledge, self.model.vectors
        vectors, stats = kn.cache.get("i", [item.text for item in items], kn.encoder, keys=[item.key for item in items])
        scaled(vectors, kn.item_stats, out=given.item_block(len(items)))  # the run's z-scoring, once for the block
        user, user_stats = self.user_vector(user_id)
        stats.add(user_stats)
        given.user_rows[1] = torch.from_numpy(user)
        return stats.as_dict()

    def user_vector(self, user_id: str) -> tuple[np.ndarray, CacheStats]:
        """(Dk,) the user's semantic vector as the run's user table made it (scaled), remembered per user.

        It depends on the user's stored record and the student alone, never on the request, so one
        computation per user and student version stands (the memo is part of the in-process level)."""
        kn = self.knowledge
        record = self.users.get(user_id)
        if not kn.user_level or record is None or kn.user_mode == "none":
            return np.zeros(self.model.vectors.dim, np.float32), CacheStats()
        slot = self.user_memo.slot(user_id)
        if slot is not None:
            return self.user_memo.gather([slot])[0], CacheStats(lru=1)
        user, stats = self.stored_user_vector(record)
        if user.any():  # a user without a vector stays zero, as in the run's table
            user = scaled(user, kn.user_stats)
        self.user_memo.put(user_id, user)
        return user, stats

    def stored_user_vector(self, record: dict) -> tuple[np.ndarray, CacheStats]:
        """(Dk,) raw vector of a stored user, as the run's user table made it, through the cache."""
        kn = self.knowledge
        if kn.user_mode == "encoded":
            text = kn.texts.user_text(record, self.items, kn.user_max_history)
            vector, stats = kn.cache.get("u", [text], kn.encoder)
            return vector[0], stats
        # "mean": the mean of the user's stored history items, each through the item cache (no extra key to go stale)
        items = [self.known_item(str(i)) for i in record[R.HISTORY] if str(i) in self.items]
        if not items:
            return np.zeros(self.model.vectors.dim, np.float32), CacheStats()
        vectors, stats = kn.cache.get("i", [item.text for item in items], kn.encoder, keys=[item.key for item in items])
        return vectors.mean(axis=0), stats


def scaled(vectors: np.ndarray, stats: tuple[np.ndarray, np.ndarray] | None, out: np.ndarray | None = None) -> np.ndarray:
    """Vectors z-scored with a run's table statistics (unchanged when the run used raw vectors), into out if given."""
    out = np.empty_like(vectors, np.float32) if out is None else out
    if stats is None:
        out[...] = vectors
        return out
    np.subtract(vectors, stats[0], out=out)
    return np.divide(out, stats[1], out=out)


def warm(config: ServeConfig, top: int) -> dict:
    """Store in Redis the vectors of the top-N items by train exposures; returns the cache counts.

    When the serving encoder is the one that wrote the run's knowledge tables (always, unless --student names
    another student), their vectors *are* its output (the same text, max_length and pooling): they are stored
    as they are, and only items absent from the tables are computed (the encoder is loaded only then)."""
    if config.redis is None:
        raise ConfigError("ctr warm needs --redis (the in-process cache belongs to a running server)")
    redis = RedisStore(config.redis, config.redis_timeout_s)
    if not redis.ping():
        raise ConfigError(f"redis at {config.redis} unavailable: nothing warmed")
    run = json.loads((Path(config.model) / "ctr_config.json").read_text())
    if not run.get("knowledge") or run.get("lora"):
        raise ConfigError(f"{config.model}: model {run.get('model')} reads no cached vectors: nothing to warm")
    knowledge = Path(run["knowledge"])
    encoder, table_texts = table_encoder(knowledge, config.student, config.encode_batch_size)
    items = R.read_records(Path(run["data"]) / "items.jsonl", "item")
    ranked = sorted(items, key=lambda r: -int((r.get(R.STATS) or {}).get(R.EXPOSURES, 0)))[:top]
    texts = [table_texts.item_text(str(r[R.ITEM_ID]), r, catalogue=True) for r in ranked]
    own = config.student in (None, read_embed_config(knowledge).get("model"))
    table = dict(zip(*read_table(knowledge / ITEM_TABLE))) if own else {}
    known = {text: table[str(r[R.ITEM_ID])] for r, text in zip(ranked, texts) if str(r[R.ITEM_ID]) in table}
    loaded = []

    def compute(batch: list[str]) -> np.ndarray:
        todo = [t for t in batch if t not in known]
        if todo:
            loaded.append(len(todo))
            known.update(zip(todo, encoder(todo)))
        return np.stack([known[t] for t in batch])

    cache = VectorCache(version=encoder.version, codec=config.codec, lru_size=0, redis=redis)
    counts = CacheStats()
    for start in range(0, len(texts), config.encode_batch_size):
        counts.add(cache.get("i", texts[start : start + config.encode_batch_size], compute)[1])
    adapted = warm_adapted(config, [str(r[R.ITEM_ID]) for r in ranked]) if config.item_path == "adapted" else None
    if not redis.up:
        raise ConfigError(f"redis at {config.redis} went away: {counts.redis_writes} of {len(texts)} vectors stored")
    return {"items": len(texts), **counts.as_dict(), "from_tables": own and len(table) > 0,
            "student_loaded": bool(loaded), "version": cache.version, "adapted": adapted}


def warm_adapted(config: ServeConfig, item_ids: list[str]) -> dict:
    """Store the model's pre-computed rows (`ctr.adapted`) of the items, made from the raw vectors just stored."""
    served = Served(replace(config, lru_size=0))
    counts = CacheStats()
    for start in range(0, len(item_ids), config.encode_batch_size):
        items = [served.known_item(i) for i in item_ids[start : start + config.encode_batch_size]]
        with torch.inference_mode():
            counts.add(served.adapted_rows(items)[1])
    return {**counts.as_dict(), "version": served.knowledge.adapted.version}
