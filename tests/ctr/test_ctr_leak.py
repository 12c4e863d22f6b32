"""No input of a sample depends on its own label or on a later event (issue 21, point 1).

The raw ratings are perturbed after a time t, `ctr prepare` and the trainer's own input path run again, and
every row with ts <= t must get exactly the inputs it had: its history, its user and item fields, and the raw
knowledge vectors MSD feeds it (target item, history items, and the user vector from each `user_source`: the
history mean, the users.jsonl mean table and a `distill embed --users` table, whose users without a history
still get a vector, of their profile). Each check runs on a folder of one T0 snapshot, on a
`--late-snapshot` folder (issue 24), where users who start rating after T0 get their snapshot at the end of
validation and their table vector on their test rows only, and on a `--snapshot-clicks` folder, where each
user's snapshot is at their own K-th click and users with fewer clicks have no record.
Two perturbations: the labels of every event at ts >= t flipped (the row's own label included), and every
event after t dropped (split at the same timestamps). Quantities fitted once on the train split (the
vocabularies, the z-score statistics, the item counts behind the masking) are the model's parameters, not
a sample's inputs; the vocabulary ids are compared as the values they stand for.

`test_the_check_catches_the_old_user_table` plants the leak this replaced (users.jsonl holding every train
click, its user table fed to every row) and asserts that the same comparison finds it.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_files import LATE_USERS, grid_ratings, ml1m_folder  # noqa: E402

import distill.embed
from ctr.build import build_model
from ctr.data import batch_of, build_catalogue, build_split, load_prepared
from ctr.features import build_features
from ctr.prepare import prepare
from ctr.raw import PrepareConfig
from ctr.train_config import CTRConfig
from ctr.user_table import train_window_users, user_times, write_user_mean_table
from distill.embed import EmbedConfig, embed_tables
from ground import records as R
from ground.vectors import ITEM_TABLE, USER_TABLE, read_table, write_table

def fake_encoder(config):
    """distill.embed's text encoder, faked: a fixed random vector per text (the same text, the same vector)."""
    def encode(texts, desc=None):
        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=6) for t in texts]).astype(np.float32)
    return encode, {}, None


def item_vectors(folder: Path, item_ids: list[str]) -> Path:
    """A fixed random vector per movie id (the same in every run), as `distill embed` writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.stack([np.random.default_rng(int(i)).normal(size=6) for i in item_ids]).astype(np.float32)
    write_table(folder / ITEM_TABLE, item_ids, vectors)
    return folder


K = 4  # --snapshot-clicks of these tests: grid_ratings(seed 0 or 1) leaves some users below it
RULES = {"t0": {}, "late-snapshot": {"late_snapshot": True}, "snapshot-clicks": {"snapshot_clicks": K}}


def prepared(root: Path, rows: list[tuple], split_ts: tuple[int, int] | None = None,
             rule: str = "t0", clicks: int = K) -> tuple[Path, Path]:
    """(prepared folder, knowledge folder with item vectors and the users.jsonl mean table; beside it `encoded`,
    the `distill embed --users` tables of a fake encoder) of these ratings, users.jsonl as RULES[rule] says
    (snapshot-clicks: at the `clicks`-th click)."""
    raw = ml1m_folder(root / "raw", ratings=rows)
    out = root / "prepared"
    prepare(PrepareConfig(dataset="ml-1m", raw=raw, output=out, max_history=5, split_ts=split_ts,
                          split_fractions=(0.7, 0.15, 0.15),
                          **RULES[rule] | ({"snapshot_clicks": clicks} if rule == "snapshot-clicks" else {})),
            log=lambda m: None)
    items = [json.loads(line)["item_id"] for line in (out / "items.jsonl").read_text().splitlines()]
    knowledge = item_vectors(root / "knowledge", items)
    write_user_mean_table(knowledge, out / "users.jsonl")
    with mock.patch.object(distill.embed, "text_encoder", fake_encoder):
        embed_tables(EmbedConfig(items=out / "items.jsonl", users=out / "users.jsonl", output=root / "encoded",
                                 encoder="fake"))
    return out, knowledge


def row_inputs(folder: Path, knowledge: Path) -> dict[tuple, tuple]:
    """(user, item, ts) -> every input the trainer builds for that row, as plain values."""
    data = load_prepared(folder)
    features = build_features(data.split("train"), data.card)
    catalogue = build_catalogue(data, features)
    inverse = {f: {i: v for v, i in features.vocabs[f].items()} for f in features.vocabs}
    tables = {"history": knowledge, "table": knowledge, "encoded": knowledge.parent / "encoded"}
    models = {name: build_model(CTRConfig(data=str(folder), output="x", model="msd", knowledge=str(tables[name]),
                                          embed_dim=4, hidden=[4], attention_hidden=[4], standardize_vectors=False,
                                          user_source="history" if name == "history" else "table"),
                                features, catalogue, data).eval()
              for name in tables}
    out = {}
    for name in ("train", "val", "test"):
        split = build_split(data, name, features, data.card["max_history"])
        if not len(split):
            continue
        batch = batch_of(split, torch.arange(len(split)))
        keys = torch.cat([batch.item.unsqueeze(1), batch.history], dim=1)
        unique, rows_of = torch.unique(keys, return_inverse=True)
        raw = models["history"].vectors.items(keys)  # (N, 1 + L, Dk)
        vectors = models["history"].vectors.items(unique)
        users = {s: m.user_vectors(vectors, rows_of, batch).detach().numpy().round(5) + 0.0  # -0 -> 0
                 for s, m in models.items()}
        rows = data.split(name)
        for n, (user, item, ts) in enumerate(zip(rows["user_id"], rows["item_id"], rows["ts"])):
            fields = [inverse[f].get(int(i), "<unknown>") for f, i in zip(features.user_fields, batch.user[n].tolist())]
            item_fields = [inverse[f].get(int(i), "<unknown>")
                           for f, i in zip(features.item_fields, catalogue.item_table[batch.item[n]].tolist())]
            history = tuple(data.item_ids[k - 1] for k in batch.history[n].tolist() if k)
            out[(str(user), str(item), int(ts))] = (
                tuple(fields), tuple(item_fields), history, raw[n].detach().numpy().round(5).tobytes(),
                users["history"][n].tobytes(), users["table"][n].tobytes(), users["encoded"][n].tobytes())
    return out


def changed(before: dict, after: dict, t: int) -> list[tuple]:
    """The rows with ts <= t whose inputs differ (or that vanished)."""
    return [key for key, value in before.items() if key[2] <= t and after.get(key) != value]


def cut_times(rows: list[tuple]) -> list[int]:
    """A spread of times t to perturb after: inside train (before and after the users.jsonl snapshot), val, test."""
    ts = np.sort([r[3] for r in rows])
    return [int(ts[int(q * (len(ts) - 1))]) for q in (0.2, 0.45, 0.6, 0.75, 0.9)]


def flipped(rows: list[tuple], t: int) -> list[tuple]:
    """Every rating at ts >= t moved across the click threshold (4): a click becomes a non-click and back."""
    return [(u, i, (2 if r >= 4 else 5) if ts >= t else r, ts) for u, i, r, ts in rows]


def check_flips(tmp_path: Path, rows: list[tuple], rule: str = "t0") -> list[tuple]:
    base = row_inputs(*prepared(tmp_path / "base", rows, rule=rule))
    bad = []
    for n, t in enumerate(cut_times(rows)):
        bad += changed(base, row_inputs(*prepared(tmp_path / f"flip{n}", flipped(rows, t), rule=rule)), t)
    return bad


def table_fed(inputs: dict[tuple, tuple]) -> dict[str, list[tuple]]:
    """The rows each user table feeds a non-zero vector (mean table, encoded table)."""
    return {name: [key for key, value in inputs.items() if np.frombuffer(value[column], np.float32).any()]
            for name, column in (("table", 5), ("encoded", 6))}


@pytest.mark.parametrize("rule", RULES)
def test_flipping_the_labels_from_t_on_changes_no_input_of_a_row_up_to_t(tmp_path, rule):
    rows = grid_ratings(late=rule == "late-snapshot")
    assert check_flips(tmp_path, rows, rule) == []


@pytest.mark.parametrize("rule", RULES)
def test_dropping_the_events_after_t_changes_no_input_of_a_row_up_to_t(tmp_path, rule):
    rows = grid_ratings(seed=1, late=rule == "late-snapshot")
    folder, knowledge = prepared(tmp_path / "base", rows, rule=rule)
    card = json.loads((folder / "card.json").read_text())
    split_ts = (card["cutoffs"]["train_last_ts"], card["cutoffs"]["val_last_ts"])
    base = row_inputs(folder, knowledge)
    assert all(table_fed(base).values()), "a snapshot table feeds no row: the check would not see it"
    for n, t in enumerate(cut_times(rows)):
        kept = [r for r in rows if r[3] <= t]
        after = row_inputs(*prepared(tmp_path / f"drop{n}", kept, split_ts, rule=rule))
        assert changed(base, after, t) == [], t


def test_a_late_snapshot_feeds_its_users_test_rows_only(tmp_path):
    """The late users' vectors reach their rows after the end of validation, and no earlier row."""
    folder, knowledge = prepared(tmp_path / "late", grid_ratings(seed=1, late=True), rule="late-snapshot")
    card = json.loads((folder / "card.json").read_text())
    t0, late = card["users_snapshot_ts"], card["users_late_snapshot_ts"]
    times = {u["user_id"]: u["history_as_of"] for u in map(json.loads, (folder / "users.jsonl").open())}
    assert {times[str(u)] for u in LATE_USERS} == {late} and set(times.values()) == {t0, late}
    fed = table_fed(row_inputs(folder, knowledge))
    for name, keys in fed.items():
        late_rows = [(u, ts) for u, _, ts in keys if times[u] == late]
        assert late_rows and all(ts > late for _, ts in late_rows), name
        assert all(ts > times[u] for u, _, ts in keys), name
def kth_clicks(rows: list[tuple], k: int) -> dict[str, int]:
    """user id -> the ts of their k-th click (rating >= 4) by hand, for the users with k clicks."""
    clicks: dict[str, list[int]] = {}
    for user, _, rating, ts in rows:
        if rating >= 4:
            clicks.setdefault(str(user), []).append(ts)
    return {u: sorted(ts)[k - 1] for u, ts in clicks.items() if len(ts) >= k}


@pytest.mark.parametrize("clicks", [3, K])
def test_a_snapshot_clicks_vector_reaches_exactly_its_users_rows_after_their_kth_click(tmp_path, clicks):
    """On train, val and test alike; a user with fewer clicks has no record and none of their rows is fed."""
    rows = grid_ratings()
    folder, knowledge = prepared(tmp_path / "k", rows, rule="snapshot-clicks", clicks=clicks)
    kth = kth_clicks(rows, clicks)
    assert 0 < len(kth) < len({r[0] for r in rows})  # some users below K
    times = {u["user_id"]: u["history_as_of"] for u in map(json.loads, (folder / "users.jsonl").open())}
    assert times == kth
    inputs = row_inputs(folder, knowledge)
    expected = {key for key in inputs if key[0] in kth and key[2] > kth[key[0]]}
    samples = load_prepared(folder).samples
    fed_splits = {s for u, i, ts, s in samples[["user_id", "item_id", "ts", "split"]].itertuples(index=False)
                  if (str(u), str(i), int(ts)) in expected}
    assert fed_splits == ({"train", "val", "test"} if clicks == 3 else {"val"}), fed_splits
    for name, keys in table_fed(inputs).items():
        assert set(keys) == expected, name


def test_the_user_z_score_statistics_come_from_the_users_whose_kth_click_is_in_the_train_window(tmp_path):
    """A K-th click after train holds later events than the train rows those statistics also scale."""
    rows = grid_ratings()
    folder, knowledge = prepared(tmp_path / "k", rows, rule="snapshot-clicks", clicks=3)
    data, kth = load_prepared(folder), kth_clicks(rows, 3)
    fit = train_window_users(user_times(knowledge, data), data)
    last = int(data.split("train")["ts"].max())
    assert [u for u, f in zip(data.user_ids, fit[1:].tolist()) if f] == [u for u in data.user_ids if kth[u] <= last]
    assert 0 < int(fit.sum()) < len(kth) and not fit[0]


def test_with_snapshot_clicks_a_table_or_users_file_of_another_rule_is_refused(tmp_path):
    rows = grid_ratings(seed=1)
    k4, knowledge_k4 = prepared(tmp_path / "k4", rows, rule="snapshot-clicks")
    _, knowledge_t0 = prepared(tmp_path / "t0", rows)
    k3 = prepared(tmp_path / "k3", rows, rule="snapshot-clicks", clicks=K - 1)[0]
    for folder, knowledge in ((k3, knowledge_k4), (k4, knowledge_t0)):
        with pytest.raises(ValueError, match="snapshot time .* is not theirs in"):
            row_inputs(folder, knowledge)
    with pytest.raises(ValueError, match="made from a users.jsonl snapshot at"):  # and the other way round
        row_inputs(tmp_path / "t0" / "prepared", knowledge_k4)
    users = [json.loads(line) for line in (k4 / "users.jsonl").read_text().splitlines()]
    users[0]["history_as_of"] -= 60  # a record edited: the card's digest no longer holds
    (k4 / "users.jsonl").write_text("".join(json.dumps(u) + "\n" for u in users))
    with pytest.raises(ValueError, match="snapshot times are not the ones .* records"):
        write_user_mean_table(knowledge_k4, k4 / "users.jsonl")


def test_the_check_catches_the_old_user_table(tmp_path, monkeypatch):
    """The planted leak: users.jsonl = every train click, its table fed to every row (ctr before issue 21)."""
    import ctr.prepare as P

    def every_train_click(users, samples, max_history, as_of):
        train = samples[(samples["split"] == "train") & (samples[R.LABEL] == 1)]
        history = train.groupby(R.USER_ID, sort=False)[R.ITEM_ID].agg(list)
        used = users.loc[users.index.isin(samples[R.USER_ID].unique())]
        return [{R.USER_ID: u, R.HISTORY: history.get(u, [])[-max_history:], R.PROFILE: p,
                 R.HISTORY_AS_OF: int(as_of[u])} for u, p in used[R.PROFILE].items()]

    monkeypatch.setattr(P, "user_records", every_train_click)
    monkeypatch.setattr(P, "snapshot_ts", lambda ts, cutoffs, fraction: int(ts.min()) - 1)  # fed to every row
    assert check_flips(tmp_path, grid_ratings()) != []


def test_a_user_table_from_another_snapshot_is_refused(tmp_path):
    folder, knowledge = prepared(tmp_path / "a", grid_ratings())
    t0 = json.loads((folder / "card.json").read_text())["users_snapshot_ts"]
    ids, vectors = read_table(knowledge / USER_TABLE)
    write_table(knowledge / USER_TABLE, ids, vectors, as_of=[t0] * (len(ids) - 1) + [5])
    with pytest.raises(ValueError, match="made from a users.jsonl snapshot at 5, not one of this folder's snapshot"):
        row_inputs(folder, knowledge)


def test_a_table_written_before_per_user_times_keeps_working_with_its_one_t0(tmp_path):
    folder, knowledge = prepared(tmp_path / "a", grid_ratings())
    before = row_inputs(folder, knowledge)
    ids, vectors = read_table(knowledge / USER_TABLE)
    write_table(knowledge / USER_TABLE, ids, vectors)  # no history_as_of column: the one time of embed_config
    embed = json.loads((knowledge / "embed_config.json").read_text())
    del embed["users_snapshot_times"]
    t0 = json.loads((folder / "card.json").read_text())["users_snapshot_ts"]
    (knowledge / "embed_config.json").write_text(json.dumps({**embed, "users_snapshot_ts": t0}))
    assert row_inputs(folder, knowledge) == before
    (knowledge / "embed_config.json").write_text(json.dumps({**embed, "users_snapshot_ts": 5}))
    with pytest.raises(ValueError, match="snapshot at 5"):
        row_inputs(folder, knowledge)
