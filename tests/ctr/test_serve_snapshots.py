"""`ctr serve` with a `--late-snapshot` user table (issue 24): a request comes after every snapshot, so every
test row, a late user's included, is served as `ctr eval` scores it."""

from __future__ import annotations

import json

import numpy as np
from prepare_files import LATE_USERS, grid_ratings, ml1m_folder

from ctr.prepare import prepare
from ctr.raw import PrepareConfig


def test_a_late_snapshot_user_table_is_served_as_ctr_eval_scores_the_test_rows(tmp_path, tiny_student):
    from ctr.data import build_split
    from ctr.runs import load_run
    from ctr.scoring import ServeConfig, Served
    from ctr.train import predict, train
    from ctr.train_config import CTRConfig
    from distill.embed import EmbedConfig, embed_tables
    from ground.vectors import USER_TABLE, read_times

    prepared, knowledge, run = tmp_path / "prepared", tmp_path / "knowledge", tmp_path / "run"
    raw = ml1m_folder(tmp_path / "raw", ratings=grid_ratings(seed=1, per_user=8, late=True))
    card = prepare(PrepareConfig(dataset="ml-1m", raw=raw, output=prepared, max_history=5, late_snapshot=True,
                                 split_fractions=(0.6, 0.2, 0.2)), log=lambda m: None)
    embed_tables(EmbedConfig(model=str(tiny_student), items=prepared / "items.jsonl", users=prepared / "users.jsonl",
                             output=knowledge, max_length=32, max_history=5))
    late = card["users_late_snapshot_ts"]
    assert {read_times(knowledge / USER_TABLE)[str(u)] for u in LATE_USERS} == {late}
    train(CTRConfig(data=str(prepared), output=str(run), model="msd", knowledge=str(knowledge), user_source="table",
                    epochs=1, batch_size=16, embed_dim=8, hidden=[16], attention_hidden=[8], adaptor_hidden=16))

    loaded = load_run(run)
    expected = predict(loaded.model, build_split(loaded.data, "test", loaded.features, loaded.max_history), 4096)
    rows = loaded.data.split("test")
    assert set(map(str, LATE_USERS)) & set(rows["user_id"].astype(str))  # late users' rows are among those served
    for item_path in ("adapted", "raw"):  # raw: the model's own forward, its snapshot-time check included
        served = Served(ServeConfig(model=str(run), codec="float32", item_path=item_path))
        got = [served.score(user_id=r.user_id, history=[str(i) for i in r.history], candidates=[r.item_id])["scores"][0]
               for r in rows.itertuples()]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=item_path)
    assert json.loads((knowledge / "embed_config.json").read_text())["users_snapshot_times"] == sorted(
        {card["users_snapshot_ts"], late})
