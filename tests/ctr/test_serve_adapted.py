"""MSD's pre-computed item path (`ctr.adapted`, issue 26): the same scores as the path that adapts raw vectors
on every request, rows keyed by the model's version (a retrained model never reads another run's rows)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ctr.scoring import ServeConfig, Served
from test_serve import (a_request, eval_rows, msd_history_run, msd_mean_run, msd_run,  # noqa: F401 (fixtures)
                        redis_server, student_knowledge, train_run)



@pytest.fixture(scope="module")
def msd_concat_run(tmp_path_factory, prepared, student_knowledge) -> Path:  # noqa: F811
    """fusion "concat", no user level: the other branches of the knowledge module."""
    return train_run(tmp_path_factory.mktemp("msd-concat-run"), prepared, "msd", student_knowledge, fusion="concat",
                     user_level=False)


@pytest.fixture(scope="module")
def msd_add_run(tmp_path_factory, prepared, student_knowledge) -> Path:  # noqa: F811
    return train_run(tmp_path_factory.mktemp("msd-add-run"), prepared, "msd", student_knowledge, fusion="add", top_k=2)


def requests_of(run: Path, prepared: Path) -> list[dict]:
    """Real test rows (one candidate each) and multi-candidate requests with long and empty histories."""
    rows, _ = eval_rows(run, 25)
    many = [a_request(prepared, h, c) for h, c in ((4, 6), (8, 12), (1, 3), (0, 5))]
    renamed = {**many[0], "candidates": [{"item_id": i, "name": f"renamed {i}"} for i in many[0]["candidates"]],
               "history": [{"item_id": many[0]["history"][0], "name": "renamed too"}, *many[0]["history"][1:]]}
    return rows + many + [{**many[1], "user_id": "nobody"}, renamed]  # renamed: a known id, another text


def scores(served: Served, bodies: list[dict]) -> np.ndarray:
    return np.concatenate([served.score(**body)["scores"] for body in bodies])


@pytest.mark.parametrize("run_name", ["msd_history_run", "msd_run", "msd_mean_run", "msd_concat_run", "msd_add_run"])
@pytest.mark.parametrize("codec", ["float32", "float16"])
def test_adapted_rows_score_as_the_raw_path(run_name, codec, prepared, request):
    """Pre-computed rows (adaptor output, the gate's item half, the user adaptor's first layer) change no score."""
    run = request.getfixturevalue(run_name)
    bodies = requests_of(run, prepared)
    raw = Served(ServeConfig(model=str(run), codec=codec, item_path="raw"))
    adapted = Served(ServeConfig(model=str(run), codec=codec))
    assert adapted.knowledge.adapted is not None and raw.knowledge.adapted is None
    expected = scores(raw, bodies)
    cold, warm = scores(adapted, bodies), scores(adapted, bodies)  # rows computed, then read from the LRU
    assert np.abs(cold - expected).max() <= 1e-6 and np.abs(warm - expected).max() <= 1e-6
    assert np.std(expected) > 1e-3


def test_a_miss_is_computed_once_and_written_back(msd_history_run, prepared, redis_server):  # noqa: F811
    body = a_request(prepared, 4, 6)
    first = Served(ServeConfig(model=str(msd_history_run), redis=redis_server.url, lru_size=0))
    out = first.score(**body)
    assert out["cache"]["computed"] == 10 and out["cache"]["redis_writes"] == 20  # raw vector + row per item
    second = Served(ServeConfig(model=str(msd_history_run), redis=redis_server.url, lru_size=0))
    again = second.score(**body)
    assert again["cache"] == {"lru": 0, "redis": 10, "computed": 0, "redis_writes": 0, "hit_rate": 1.0}
    assert again["scores"] == out["scores"]


def retrained(run: Path, folder: Path) -> Path:
    """A copy of a run with other item-adaptor weights: what a new `ctr train` run looks like to the server."""
    shutil.copytree(run, folder)
    state = torch.load(folder / "model.pt")
    name = next(k for k in state if k.startswith("item_adaptor.") and k.endswith("weight"))
    state[name] = state[name] * 1.5
    torch.save(state, folder / "model.pt")
    return folder


def test_a_retrained_model_never_reads_the_old_models_rows(msd_history_run, prepared, redis_server, tmp_path):  # noqa: F811
    import redis

    new_run = retrained(msd_history_run, tmp_path / "run-v2")
    bodies = [a_request(prepared, 4, 6), a_request(prepared, 8, 12)]
    old = Served(ServeConfig(model=str(msd_history_run), redis=redis_server.url))
    new = Served(ServeConfig(model=str(new_run), redis=redis_server.url))
    assert old.knowledge.adapted.version != new.knowledge.adapted.version
    assert old.knowledge.cache.version == new.knowledge.cache.version  # the same student: raw vectors shared
    old_scores = scores(old, bodies)  # fills Redis with the old model's rows
    expected = scores(Served(ServeConfig(model=str(new_run), item_path="raw")), bodies)
    got = scores(new, bodies)
    assert np.abs(got - expected).max() <= 1e-6 and np.abs(got - old_scores).max() > 1e-4
    keys = {k.decode().split(":")[1] for k in redis.Redis.from_url(redis_server.url).keys("*:a:*")}
    assert keys == {old.knowledge.adapted.version, new.knowledge.adapted.version}


def test_warm_stores_the_models_rows(msd_history_run, prepared, redis_server):  # noqa: F811
    from ctr.scoring import warm

    counts = warm(ServeConfig(model=str(msd_history_run), redis=redis_server.url, lru_size=0), top=12)
    assert counts["adapted"]["computed"] == 0 and counts["adapted"]["redis"] == 12  # made from the stored vectors
    assert counts["adapted"]["redis_writes"] == 12
    served = Served(ServeConfig(model=str(msd_history_run), redis=redis_server.url, lru_size=0))
    out = served.score(**a_request(prepared, 4, 6))  # its 10 items are among the 12 warmed
    assert out["cache"] == {"lru": 0, "redis": 10, "computed": 0, "redis_writes": 0, "hit_rate": 1.0}
    assert counts["adapted"]["version"] == served.knowledge.adapted.version
