"""The ctr CLI is built from the config fields: every setting a flag, one meaning per setting; `ctr tune`."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from typer.testing import CliRunner

from ctr.cli import app
from ctr.raw import PrepareConfig
from ctr.serve_config import ServeConfig
from ctr.train_config import CTRConfig
from ctr.tune import TRIALS, TuneConfig, draw, space
from ground.errors import ConfigError
from ground.flags import flag_names

WIDE = {"COLUMNS": "250", "TERMINAL_WIDTH": "250"}


@pytest.mark.parametrize("command, classes", [("prepare", [PrepareConfig]), ("train", [CTRConfig]),
                                              ("tune", [CTRConfig, TuneConfig]), ("serve", [ServeConfig])])
def test_every_config_field_is_a_flag_with_help(command, classes):
    text = CliRunner().invoke(app, [command, "--help"], env=WIDE).output
    import typing

    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
            first = flag_names(f, hints[f.name])[0].split("/")[0]
            assert first in text, f"{command}: no {first} for {cls.__name__}.{f.name}"


def test_max_users_and_max_user_mean_all_as_zero_in_the_config_and_the_cli(tmp_path):
    assert PrepareConfig(dataset="online-retail", raw=tmp_path, output=tmp_path / "o", max_users=0).max_users == 0
    with pytest.raises(ConfigError, match="max_users must be >= 0"):
        PrepareConfig(dataset="online-retail", raw=tmp_path, output=tmp_path / "o", max_users=-1)
    text = " ".join(CliRunner().invoke(app, ["prepare", "--help"], env=WIDE).output.split())
    assert "0 = every customer" in text and "0 = every user" in text


def test_train_takes_the_former_yaml_only_settings_as_flags_over_the_yaml(prepared, tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("dropout: 0.1\nweight_decay: 0.00001\nhidden: [32]\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(prepared), "-o", str(out), "--config", str(yaml),
                                      "--model", "deepfm", "--epochs", "1", "--batch-size", "128", "--hidden", "16,8",
                                      "--eval-batch-size", "512"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "ctr_config.json").read_text())
    assert saved["hidden"] == [16, 8] and saved["dropout"] == 0.1 and saved["weight_decay"] == 1e-5
    assert saved["eval_batch_size"] == 512
    assert "item_train_count" in result.output  # the slices are printed


def test_tune_draws_the_same_trials_records_them_and_resumes(prepared, tmp_path):
    from ctr.tune import tune

    base = CTRConfig(data=str(prepared), output=str(tmp_path / "t"), model="din", epochs=1, batch_size=128,
                     attention_hidden=[8])
    knobs = space(base, {"epochs", "batch_size"})
    assert "embed_dim" in knobs and "top_k" not in knobs  # MSD's knobs only for MSD
    assert draw(knobs, 0, 0) == {} and draw(knobs, 0, 3) == draw(knobs, 0, 3) != draw(knobs, 1, 3)
    calls = []

    def counting(config, test):
        from ctr.train import train

        calls.append((config.output, test))
        return train(config, test=test)

    summary = tune(base, TuneConfig(trials=2, seeds=[0]), {"epochs", "batch_size", "attention_hidden"}, counting,
                   reuse=False)
    lines = (tmp_path / "t" / TRIALS).read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["val_auc"] > 0 for line in lines)
    assert [test for _, test in calls] == [False, False, True]  # trials never score the test split
    trial_metrics = json.loads((tmp_path / "t" / "trial-01" / "metrics.json").read_text())
    assert "test" not in trial_metrics and summary["test"]["auc"]["n"] == 1
    calls.clear()
    tune(base, TuneConfig(trials=2, seeds=[0]), {"epochs", "batch_size", "attention_hidden"}, counting)
    assert calls == []  # everything resumed from trials.jsonl and best/seed-0
    with pytest.raises(ConfigError, match="drawn with other settings"):
        tune(base, TuneConfig(trials=2, seeds=[0], search_seed=7), {"epochs", "batch_size", "attention_hidden"},
             counting)


def test_the_chosen_trials_own_seed_is_scored_not_trained_again_with_the_same_figures(prepared, tmp_path):
    from ctr.train import test_saved, train

    config = CTRConfig(data=str(prepared), output=str(tmp_path / "trial"), model="din", epochs=2, batch_size=128,
                       attention_hidden=[8])
    trained = train(config, test=False)
    again = train(CTRConfig(**{**config.to_dict(), "output": str(tmp_path / "again")}), test=True)
    reloaded = test_saved(tmp_path / "trial", tmp_path / "best")
    assert "test" not in trained and reloaded["best_epoch"] == again["best_epoch"]
    assert reloaded["test"]["auc"] == pytest.approx(again["test"]["auc"], abs=1e-6)
    rows = lambda m: {f: {b: v["rows"] for b, v in bs.items()} for f, bs in m["test"]["slices"].items()}  # noqa: E731
    assert rows(reloaded) == rows(again)
    assert (tmp_path / "best" / "predictions.parquet").exists() and (tmp_path / "best" / "model.pt").exists()


def test_compare_pairs_two_models_seed_by_seed_on_the_same_test_rows(prepared, tmp_path):
    runs = {}
    for model in ("din", "deepfm"):
        runs[model] = tmp_path / model
        result = CliRunner().invoke(app, ["train", "--data", str(prepared), "-o", str(runs[model]), "--model", model,
                                          "--epochs", "1", "--batch-size", "128", "--seeds", "0,1"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
    out = tmp_path / "compare.json"
    result = CliRunner().invoke(app, ["compare", "--base", str(runs["din"]), "--model", str(runs["deepfm"]),
                                      "--n-boot", "50", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    c = json.loads(out.read_text())
    auc = {m: [json.loads((runs[m] / f"seed-{s}" / "metrics.json").read_text())["test"]["auc"] for s in (0, 1)]
           for m in runs}
    assert c["seed_list"] == [0, 1] and c["auc"] == {"base": auc["din"], "model": auc["deepfm"]}
    for s in (0, 1):  # each seed's delta is the difference of the two runs' own test AUCs
        assert c["per_seed"][s]["delta"] == pytest.approx(auc["deepfm"][s] - auc["din"][s], abs=1e-9)
        low, high = c["per_seed"][s]["ci95"]
        assert low <= c["per_seed"][s]["delta"] <= high
    assert "paired_t" in c and "all test rows" in result.output

    # a run against itself: every delta and interval is exactly 0; one run folder (not seed-N) works too
    same = CliRunner().invoke(app, ["compare", "--base", str(runs["din"] / "seed-1"), "--model",
                                    str(runs["din"] / "seed-1"), "--n-boot", "20"], catch_exceptions=False)
    assert same.exit_code == 0, same.output
    c = json.loads(same.stdout[same.stdout.index("{"):])
    assert c["seed_list"] == [1] and c["mean_delta"] == 0 and c["ci95_users"] == [0, 0]

    wrong = CliRunner().invoke(app, ["compare", "--base", str(runs["din"]), "--model", str(runs["deepfm"]),
                                     "--seeds", "0,7"])
    assert wrong.exit_code != 0 and "seeds [7] are not finished in both" in wrong.output
    empty = CliRunner().invoke(app, ["compare", "--base", str(tmp_path / "nothing"), "--model", str(runs["din"])])
    assert empty.exit_code != 0 and "no finished run" in empty.output
