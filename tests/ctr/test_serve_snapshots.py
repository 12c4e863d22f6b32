"""`ctr serve` with per-user snapshot times (issue 24): a `--late-snapshot` user table, and a `--snapshot-clicks`
one (each user's snapshot at their own K-th click; users with fewer clicks have no record). A request comes after
every snapshot: a test row is served as `ctr eval` scores it where the row comes after its user's snapshot (every
test row with --late-snapshot) or the user has no record (no vector either way); a test row before its user's
K-th click gets the vector from `ctr serve` (the request is now) but not from `ctr eval` (the row's own time), so
there the served score is `ctr eval`'s with the row's time set to now."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest
from prepare_files import LATE_USERS, grid_ratings, ml1m_folder

from ctr.prepare import prepare
from ctr.raw import PrepareConfig

RULES = {"late-snapshot": {"late_snapshot": True}, "snapshot-clicks": {"snapshot_clicks": 4}}


@pytest.mark.parametrize("rule", RULES)
def test_a_per_user_snapshot_table_is_served_as_ctr_eval_scores_the_test_rows(tmp_path, tiny_student, rule):
    import torch

    from ctr.data import build_split
    from ctr.runs import load_run
    from ctr.scoring import ServeConfig, Served
    from ctr.train import predict, train
    from ctr.train_config import CTRConfig
    from distill.embed import EmbedConfig, embed_tables
    from ground.vectors import USER_TABLE, read_times

    prepared, knowledge, run = tmp_path / "prepared", tmp_path / "knowledge", tmp_path / "run"
    raw = ml1m_folder(tmp_path / "raw", ratings=grid_ratings(seed=1, per_user=8, late=rule == "late-snapshot"))
    card = prepare(PrepareConfig(dataset="ml-1m", raw=raw, output=prepared, max_history=5,
                                 split_fractions=(0.6, 0.2, 0.2), **RULES[rule]), log=lambda m: None)
    embed_tables(EmbedConfig(model=str(tiny_student), items=prepared / "items.jsonl", users=prepared / "users.jsonl",
                             output=knowledge, max_length=32, max_history=5))
    times = read_times(knowledge / USER_TABLE)
    if rule == "late-snapshot":
        late = card["users_late_snapshot_ts"]
        assert {times[str(u)] for u in LATE_USERS} == {late}
        assert json.loads((knowledge / "embed_config.json").read_text())["users_snapshot_times"] == sorted(
            {card["users_snapshot_ts"], late})
    train(CTRConfig(data=str(prepared), output=str(run), model="msd", knowledge=str(knowledge), user_source="table",
                    epochs=1, batch_size=16, embed_dim=8, hidden=[16], attention_hidden=[8], adaptor_hidden=16))

    loaded = load_run(run)
    split = build_split(loaded.data, "test", loaded.features, loaded.max_history)
    expected = predict(loaded.model, split, 4096)
    now = predict(loaded.model, replace(split, ts=torch.full_like(split.ts, int(time.time()))), 4096)
    rows = loaded.data.split("test")
    before = np.array([str(u) in times and ts <= times[str(u)] for u, ts in zip(rows["user_id"], rows["ts"])])
    fed = np.array([str(u) in times and ts > times[str(u)] for u, ts in zip(rows["user_id"], rows["ts"])])
    if rule == "late-snapshot":
        assert set(map(str, LATE_USERS)) & set(rows["user_id"].astype(str))  # late users' rows are among those served
        assert not before.any()
    else:  # test rows fed the user's vector, before their user's K-th click, and of users without a record
        assert fed.any() and before.any() and not set(rows["user_id"].astype(str)) <= set(times)
        assert not np.allclose(now[before], expected[before], rtol=0, atol=1e-6)  # the vector counts there
    expected = np.where(before, now, expected)
    for item_path in ("adapted", "raw"):  # raw: the model's own forward, its snapshot-time check included
        served = Served(ServeConfig(model=str(run), codec="float32", item_path=item_path))
        got = [served.score(user_id=r.user_id, history=[str(i) for i in r.history], candidates=[r.item_id])["scores"][0]
               for r in rows.itertuples()]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=item_path)
