"""CTR benchmark: tuned DeepFM, DIN and MSD-DIN, MSD's controls, paired statistics and slices (issue 21).

Stages (each resumable: a run folder holding metrics.json, a trial in trials.jsonl, is never trained again):

    fusion    MSD-DIN with the ORACLE item vectors (positive control: the item's click rate over all splits, or
              with `--oracle co-click` its factor of the click matrix over all splits, the one valid under
              popularity-matched negatives) for each fusion (concat, gate, add, none), seed 0, default settings:
              the fusion with the best *validation* AUC becomes MSD's for every later stage (RUNS/choice.json).
              `--stages mask` does the same for mask_by (frequent, rare, uniform) with the chosen fusion.
    tune      `ctr tune` for DeepFM, DIN and MSD-DIN (and MSD-DeepFM and ELEC: `--models deepfm,din,msd,msd-deepfm,
              elec`; the knowledge vectors, the chosen fusion): the same number
              of seeded random-search trials each, chosen on validation, then the chosen config per seed
              (test scored there only).
    retrain   the models of --models at the configs a recorded tuned table chose (`--from-record DATE`, a
              `"table": "tuned"` row of bench/results/ctr.jsonl on this dataset; the chosen trial drawn again from
              its number), per seed, in place of their tune stage: more seeds, or the runs a new row is paired
              with, on a machine that no longer holds the search.
    controls  MSD-DIN at MSD's chosen config with the vectors swapped: shuffled across items, random N(0, 1)
              (the user level built from them included), and the oracle (positive control); per seed.
    ablation  MSD-DIN at its chosen config without the user level, and without item fusion; per seed.
    vectors   MSD-DIN (and MSD-DeepFM, when --models names it) at its chosen config with each
              `--vectors LABEL=FOLDER` table (e.g. the raw-text control,
              the KAR knowledge vectors, their shuffled copy), and each `--user-vectors LABEL=FOLDER` (its user
              table too: KAR's user knowledge); per seed. Each such row is paired with DIN and, where
              `--reference LABEL` names one of them, with that row too (the raw-text control).
    protocol  DeepFM and DIN at their tuned configs on --other-data (`ctr prepare --protocol rechorus`), beside
              ReChorus 2.0's published DIN 0.7904 / DeepFM 0.7736 (full ML-1M; ours has half the users).
    table     the rows: test AUC / GAUC / LogLoss mean +- std over the seeds every row has, best epochs (below the
              cap?), trials, slice AUCs, per-seed paired deltas against the backbone with a 95% bootstrap
              interval over test users and a paired t-test, RelaImpr where the base AUC > 0.55; printed and
              appended to bench/results/ctr.jsonl with wall times and the machine load.

    python -m bench.bench_ctr --data PREPARED --knowledge EMB --label "what EMB is" --runs RUNS \
        --seeds 0,1,2 --trials 6 --stages fusion,tune,controls,table

Every run is a `ctr train` / `ctr tune` process of its own. `--tables lora` and `--tables cost` keep the
LoRA slice and the training-cost tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import RESULTS, record

from ctr.metrics import mean_std, rela_impr
from ctr.paired import RARE, rare_rows, test_predictions, with_rare
from ctr.runs import CONFIG, METRICS, PREDICTIONS
from ctr.slices import auc_text
from ctr.train_config import FUSIONS, MASK_BY, CTRConfig
from ctr.tune import SPACE, TuneConfig, draw, space

ROOT = Path(__file__).resolve().parents[1]
TUNED = {"DeepFM": "deepfm", "DIN": "din", "MSD-DIN": "msd", "MSD-DeepFM": "msd-deepfm", "ELEC": "elec"}
MSD = {"msd": "MSD-DIN", "msd-deepfm": "MSD-DeepFM"}  # MSD on each backbone: its rows are compared with that backbone
# The models that read the knowledge vectors (and MSD's fusion / mask choices). ELEC's row is its served vanilla
# network (a DIN trained with the gain network as teacher, no knowledge at serving); its gain network's test AUC is
# given beside it (its predictions are not kept, so it has no paired interval).
KNOWLEDGE_MODELS = (*MSD, "elec")
# The positive control's vectors (bench/ctr_vectors.py) and their folder: the item's click rate over all splits, void
# where negatives are drawn by popularity (an item's click rate is then nearly constant), or each item's factor of
# the click matrix over all splits (valid under either kind of negatives).
ORACLES = {"click-rate": "oracle", "co-click": "oracle-coclick"}
ORACLE_TEXT = {"click-rate": "dim 0 = the item's click rate over all splits (a deliberate leak), 7 noise dims",
               "co-click": "each item's rank-128 factor of the item x user click matrix over all splits, test clicks "
                           "included (a deliberate leak)"}


def control_names(args: argparse.Namespace) -> tuple[str, ...]:
    return ("shuffled", "random", ORACLES[args.oracle])
ABLATIONS = {"MSD-DIN w/o user level": {"user_level": False}, "MSD-DIN w/o item fusion": {"fusion": "none"}}
BACKBONE = {"DIN": "DeepFM", "MSD-DIN": "DIN", "MSD-DeepFM": "DeepFM", "ELEC": "DIN"}  # by the label's start (DeepFM: none)

# The LoRA slice and the training-cost tables (unchanged protocol: fixed settings, stated with the figures).
# The slice trains adapters in the last 2 layers (--lora-layers): in every layer a step costs ~17x more.
LORA = {"MSD w/o user level, cached": ["--model", "msd", "--no-user-level"],
        "MSD w/o user level + LoRA, last 2 layers": ["--model", "msd", "--no-user-level", "--lora", "--lora-layers", "2"]}
COST_MAIN = {"DIN": ["--model", "din"], "MSD-DIN, cached vectors": ["--model", "msd"]}
COST_LORA = {"MSD w/o user level, cached (LoRA settings)": LORA["MSD w/o user level, cached"],
             "MSD w/o user level + LoRA (LoRA settings)": ["--model", "msd", "--no-user-level", "--lora"],
             "MSD w/o user level + LoRA, last 2 layers (LoRA settings)": LORA["MSD w/o user level + LoRA, last 2 layers"]}


def ctr(*args: str) -> None:
    """One `ctr` command in a process of its own (its peak RSS is its own), niced like every long job here."""
    print(f"-- ctr {' '.join(args)}", flush=True)
    step = max(0, 10 - os.nice(0))  # niceness 10 whatever this process has (nice adds to it)
    subprocess.run(["nice", "-n", str(step), sys.executable, "-m", "ctr.cli", *args], cwd=ROOT, check=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def train_run(run: Path, args: list[str], skip_busy: bool = False) -> dict | None:
    """metrics.json of `ctr train ARGS -o run`, training only when it is not there yet.

    Two benches may share a queue (each core one bench): RUN.lock holds the pid of the one training RUN. The
    other skips it (`skip_busy`, returning None) or waits for it; a lock whose process is gone is taken over."""
    metrics = run / "metrics.json"
    lock = run.with_name(run.name + ".lock")
    run.parent.mkdir(parents=True, exist_ok=True)
    while not metrics.exists():
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            text = lock.read_text() if lock.exists() else "gone"
            if not text and time.time() - lock.stat().st_mtime < 60:
                time.sleep(1)  # its owner is writing its pid
                continue
            owner = int(text) if text.isdigit() else 0
            if owner and alive(owner):
                if skip_busy:
                    print(f"-- {run}: bench pid {owner} trains it; skipped", flush=True)
                    return None
                time.sleep(30)
            else:
                lock.unlink(missing_ok=True)  # its bench is gone: the run is free
            continue
        try:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            if not metrics.exists():
                ctr("train", *args, "-o", str(run))
        finally:
            lock.unlink(missing_ok=True)
    return json.loads(metrics.read_text())


def write_yaml(path: Path, values: dict) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


# --- stages ------------------------------------------------------------------------

def control_vectors(args: argparse.Namespace) -> dict[str, Path]:
    """RUNS/vectors/{shuffled,random,oracle or oracle-coclick}, written once (bench/ctr_vectors.py)."""
    from bench import ctr_vectors as V

    folders = {name: args.runs / "vectors" / name for name in control_names(args)}
    if not (folders["shuffled"] / "item_embeddings.parquet").exists():
        V.shuffle(args.knowledge, folders["shuffled"], seed=0)
    if not (folders["random"] / "item_embeddings.parquet").exists():
        V.random_vectors(args.data, folders["random"], dim=64, seed=0)
    oracle = folders[ORACLES[args.oracle]]
    if not (oracle / "item_embeddings.parquet").exists():
        if args.oracle == "co-click":
            V.coclick(args.data, oracle, dim=128)
        else:
            V.oracle(args.data, oracle, dim=8, seed=0)
    return folders


def choice(args: argparse.Namespace) -> dict:
    path = args.runs / "choice.json"
    return json.loads(path.read_text()) if path.exists() else {}


def choose(args: argparse.Namespace, knob: str, values: tuple[str, ...], fixed: dict) -> None:
    """MSD-DIN on the oracle vectors for each value of `knob`, seed 0: keep the best validation AUC."""
    name = ORACLES[args.oracle]
    oracle = control_vectors(args)[name]
    runs = {}
    for value in values:
        extra = [f"--{k.replace('_', '-')}={v}" for k, v in {**fixed, knob: value}.items()]
        runs[value] = train_run(args.runs / knob / f"{name}-{value}",
                                [*common(args), "--model", "msd", "--knowledge", str(oracle), *extra, "--seed", "0"])
    best = max(runs, key=lambda v: runs[v]["val"]["auc"])
    rows = {v: {"val_auc": r["val"]["auc"], "val_auc_items_1_20": r["val"]["slices"]["item_train_count"]["1-20"]["auc"],
                "test_auc": r["test"]["auc"], "best_epoch": r["best_epoch"], "train_seconds": r["train_seconds"]}
            for v, r in runs.items()}
    text = "\n".join(f"{v:10} val AUC {r['val_auc']:.4f} (items 1-20: {auc_text(r['val_auc_items_1_20'])}), test AUC "
                     f"{r['test_auc']:.4f}, best epoch {r['best_epoch']}{'  <- chosen' if v == best else ''}"
                     for v, r in rows.items())
    print(f"\n{knob} on the positive control ({args.oracle} oracle vectors), chosen on validation:\n{text}\n",
          flush=True)
    (args.runs / "choice.json").write_text(json.dumps({**choice(args), knob: best}, indent=2))
    record("ctr", {"table": f"{knob}-choice", "dataset": title(args), "data": str(args.data), "judge":
                   f"validation AUC of MSD-DIN with the {args.oracle} oracle item vectors (positive control: "
                   f"{ORACLE_TEXT[args.oracle]}), seed 0, default settings", "fixed": fixed, "rows": rows, "chosen": best, "printed": text,
                   "settings": args.train_args})


def msd_settings(args: argparse.Namespace) -> list[str]:
    made = choice(args)
    return [f"--{k.replace('_', '-')}={v}" for k, v in made.items()]


RETRAINED = "retrained.json"  # tune/<model>/RETRAINED: the record a retrained row's config came from


def tune(args: argparse.Namespace, seeds: list[int]) -> None:
    """`ctr tune` per model: the trials first for every model, then the seeds (so a cut run has all models)."""
    models = [m for m in args.models.split(",") if not (args.runs / "tune" / m / RETRAINED).exists()]
    for seed_list in ([seeds[0]], seeds):
        for model in models:  # a model the retrain stage trained at a recorded config is not searched again
            extra = ["--knowledge", str(args.knowledge), *msd_settings(args)] if model in KNOWLEDGE_MODELS else []
            ctr("tune", *common(args), "--model", model, *extra, "--trials", str(args.trials),
                "--seeds", ",".join(map(str, seed_list)), "-o", str(args.runs / "tune" / model))


def chosen_config(args: argparse.Namespace, model: str) -> dict:
    """The whole config `model`'s tuned runs trained with (a retrained model's: its first seed's ctr_config.json)."""
    folder = args.runs / "tune" / model
    if (folder / RETRAINED).exists():
        written = sorted((folder / "best").glob(f"seed-*/{CONFIG}"))
        if not written:
            raise SystemExit(f"{folder / 'best'}: no retrained run of {model} has started yet (its stage first)")
        return json.loads(written[0].read_text())
    return json.loads((folder / "tune.json").read_text())["chosen"]


def redrawn(args: argparse.Namespace, model: str, row: dict) -> dict:
    """The settings `ctr tune` drew for a recorded row's chosen trial, drawn again (the draws are seeded by trial
    number), checked against the values the record printed; SystemExit if they differ (another search space)."""
    fixed = {a[2:].split("=")[0].replace("-", "_") for a in args.train_args.split() if a.startswith("--")}
    base = CTRConfig(data=str(args.data), model=model, knowledge=str(args.knowledge or ""), output=str(args.runs))
    params = draw(space(base, fixed), TuneConfig().search_seed, row["chosen_trial"])
    printed = row["chosen"]
    made = {**params, **(choice(args) if model in KNOWLEDGE_MODELS else {})}  # choice.json: MSD's fusion, mask_by
    differ = {k: (v, printed[k]) for k, v in made.items() if k in printed and json.dumps(v) != json.dumps(printed[k])}
    if differ:
        raise SystemExit(f"{RESULTS / 'ctr.jsonl'}: {model}'s trial {row['chosen_trial']} of {args.from_record} draws "
                         f"again as {differ} (now, recorded): the search space or RUNS/choice.json differs; tune again")
    return {**{k: v for k, v in printed.items() if k in SPACE}, **params}


def retrain(args: argparse.Namespace, seeds: list[int]) -> None:
    """Each model of --models at the config the recorded tuned table `--from-record` chose for it, one run per seed in
    RUNS/tune/<model>/best/seed-N (where `ctr tune` would put them). The chosen trial's settings are drawn again
    from its number (a record prints only some of them: not MSD's standardize_vectors) and must match those
    printed; a knowledge model reads --knowledge and RUNS/choice.json, as its search did."""
    if not args.from_record:
        raise SystemExit("--stages retrain needs --from-record DATE (a tuned table's date in bench/results/ctr.jsonl)")
    path = RESULTS / "ctr.jsonl"
    found = [r for r in map(json.loads, path.read_text().splitlines())
             if r.get("table") == "tuned" and r.get("date") == args.from_record and r.get("dataset") == title(args)]
    if not found:
        raise SystemExit(f"{path}: no tuned table of {title(args)!r} dated {args.from_record!r}")
    record_rows = found[-1]["rows"]
    for label, model in TUNED.items():
        if model not in args.models.split(","):
            continue
        if label not in record_rows:
            raise SystemExit(f"{path}: the tuned table of {args.from_record} has no {label} row to retrain")
        row = record_rows[label]
        folder = args.runs / "tune" / model
        yaml_path = write_yaml(folder / "best" / "config.yaml", redrawn(args, model, row))
        (folder / RETRAINED).write_text(json.dumps({"record": args.from_record, "trials": row["trials"],
                                                    "chosen_trial": row["chosen_trial"],
                                                    "search_wall_s": row["search_wall_s"], "chosen": row["chosen"]},
                                                   indent=2))
        extra = ["--knowledge", str(args.knowledge), *msd_settings(args)] if model in KNOWLEDGE_MODELS else []
        for seed in seeds:
            train_run(folder / "best" / f"seed-{seed}",
                      [*common(args), "--model", model, *extra, "--config", str(yaml_path), "--seed", str(seed)],
                      skip_busy=True)


def slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)


def variant_runs(args: argparse.Namespace, group: str, label: str, changes: dict, seeds: list[int],
                 model: str = "msd") -> None:
    """MSD (on DIN, or `model`'s backbone) at its tuned config with `changes`, one run per seed in
    RUNS/<group>/<label>/seed-N."""
    config = {**chosen_config(args, model), **changes}
    folder = args.runs / group / slug(label)
    yaml_path = write_yaml(folder / "config.yaml", {k: v for k, v in config.items() if k not in ("output", "seed")})
    for seed in seeds:
        train_run(folder / f"seed-{seed}", ["--config", str(yaml_path), "--seed", str(seed)], skip_busy=True)


def controls(args: argparse.Namespace, seeds: list[int]) -> None:
    for seed in seeds:  # seed by seed, as `vectors`
        for name, folder in control_vectors(args).items():
            variant_runs(args, "controls", name, {"knowledge": str(folder)}, [seed])


def vector_sets(args: argparse.Namespace, model: str = "msd") -> dict[str, dict]:
    """`--vectors LABEL=FOLDER` and `--user-vectors LABEL=FOLDER` -> {row label ("MSD-DIN, LABEL" for `model`
    msd): the config changes of its runs}.

    A --user-vectors row reads FOLDER's user table too (`user_source: table`: each user's vector from their
    users.jsonl snapshot, on their rows after its time only) instead of the mean over the sample's own history."""
    out = {}
    for flag, texts, extra in (("--vectors", args.vectors, {}),
                               ("--user-vectors", args.user_vectors, {"user_source": "table"})):
        for text in texts:
            label, sep, folder = text.partition("=")
            if not sep or not label or not folder:
                raise SystemExit(f"{flag} takes LABEL=FOLDER, got {text!r}")
            out[f"{MSD[model]}, {label}"] = {"knowledge": str(Path(folder)), **extra}
    return out


def vectors(args: argparse.Namespace, seeds: list[int]) -> None:
    """Each vector set's rows for every MSD model of --models (msd, msd-deepfm), at that model's tuned config."""
    models = [m for m in args.models.split(",") if m in MSD]
    for seed in seeds:  # seed by seed: a run cut short has every row at its first seeds
        for model in models:
            for label, changes in vector_sets(args, model).items():
                variant_runs(args, "vectors", label, changes, [seed], model)


def ablations(args: argparse.Namespace) -> dict[str, dict]:
    """The ABLATIONS that change MSD-DIN's tuned config (where its tuning chose fusion "none", "w/o item fusion"
    is MSD-DIN itself: no row of its own)."""
    if not (args.runs / "tune" / "msd" / "tune.json").exists():
        return ABLATIONS
    config = chosen_config(args, "msd")
    return {name: changes for name, changes in ABLATIONS.items()
            if any(config.get(k) != v for k, v in changes.items())}


def ablation(args: argparse.Namespace, seeds: list[int]) -> None:
    kept = ablations(args)
    for name in ABLATIONS.keys() - kept.keys():
        print(f"{name}: MSD-DIN's tuned config already has {ABLATIONS[name]}, no row of its own", flush=True)
    for seed in seeds:  # seed by seed, as `vectors`
        for name, changes in kept.items():
            variant_runs(args, "ablation", name, changes, [seed])


# ReChorus 2.0's figures on the full ML-1M under its CTR protocol (ID features, its own tuning).
RECHORUS = {"DIN": 0.7904, "DeepFM": 0.7736}


def protocol_table(args: argparse.Namespace, seeds: list[int]) -> None:
    """DeepFM and DIN at their tuned configs (tuned on our protocol) on another prepared folder, per seed."""
    if args.other_data is None:
        raise SystemExit("--stages protocol needs --other-data (a `ctr prepare --protocol rechorus` folder)")
    card = json.loads((args.other_data / "card.json").read_text())
    rows = {}
    for label, model in (("DeepFM", "deepfm"), ("DIN", "din")):
        config = {**chosen_config(args, model), "data": str(args.other_data)}
        folder = args.runs / "protocol" / slug(card.get("title", "other")) / model
        yaml_path = write_yaml(folder / "config.yaml", {k: v for k, v in config.items() if k not in ("output", "seed")})
        runs = [train_run(folder / f"seed-{s}", ["--config", str(yaml_path), "--seed", str(s)]) for s in seeds]
        rows[label] = {**{k: mean_std([r["test"][k] for r in runs]) for k in ("auc", "gauc", "logloss")},
                       "best_epochs": [r["best_epoch"] for r in runs], "epochs_cap": runs[0]["epochs_cap"],
                       "test_rows": runs[0]["test"]["samples"], "published_full_ml1m": RECHORUS[label]}
    text = "\n".join(f"{label:8} test AUC {fmt(r['auc'])} over {r['test_rows']:,} rows (ReChorus 2.0, full ML-1M: "
                     f"{r['published_full_ml1m']}), best epochs {r['best_epochs']} (cap {r['epochs_cap']})"
                     for label, r in rows.items())
    print(f"\n{card.get('title')}: DeepFM and DIN at their tuned configs (seeds {seeds})\n{text}\n", flush=True)
    record("ctr", {"table": "protocol", "dataset": card.get("title"), "data": str(args.other_data),
                   "protocol": card["protocol"], "splits": card["splits"], "seeds": seeds, "rows": rows,
                   "configs": "the DeepFM / DIN configs tuned on our protocol (bench tune stage), data swapped",
                   "note": "ours: users 1-2998 of ML-1M (about half of its users); ReChorus: all 6,040",
                   "printed": text})


# --- the table ---------------------------------------------------------------------

def row_folders(args: argparse.Namespace) -> dict[str, Path]:
    """Row label -> folder holding seed-N runs."""
    rows = {label: args.runs / "tune" / model / "best" for label, model in TUNED.items()}
    rows |= {f"MSD-DIN, {name} vectors": args.runs / "controls" / name for name in control_names(args)}
    rows |= {label: args.runs / "ablation" / slug(label) for label in ablations(args)}
    rows |= {label: args.runs / "vectors" / slug(label) for model in MSD for label in vector_sets(args, model)}
    return rows


def load_runs(folder: Path, seeds: list[int]) -> dict[int, tuple[dict, pd.DataFrame]]:
    """seed -> (metrics, test predictions) of the finished seed-N runs in `folder` (the others are left out)."""
    out = {}
    for seed in seeds:
        run = folder / f"seed-{seed}"
        if (run / METRICS).exists() and (run / PREDICTIONS).exists():
            out[seed] = (json.loads((run / METRICS).read_text()), test_predictions(run))
    return out


def slice_means(metrics: list[dict]) -> dict:
    """Mean test AUC of each slice over the seeds (rows: the same in every seed)."""
    first = metrics[0]["test"]["slices"]
    out = {}
    for family, buckets in first.items():
        out[family] = {}
        for name, s in buckets.items():
            aucs = [m["test"]["slices"][family][name]["auc"] for m in metrics]
            out[family][name] = {"rows": s["rows"], "auc": mean_std(aucs) if None not in aucs else None}
    return out


def family(label: str) -> str:
    """The tuned row a row label belongs to: "MSD-DeepFM, KAR" -> "MSD-DeepFM"; "MSD-DIN w/o ..." -> "MSD-DIN"."""
    return next((name for name in sorted(TUNED, key=len, reverse=True) if label.startswith(name)), label)


def tune_facts(args: argparse.Namespace, label: str) -> dict:
    model = TUNED.get(label)
    path = args.runs / "tune" / (model or TUNED[family(label)]) / "tune.json"
    if model and (path.parent / RETRAINED).exists():
        facts = json.loads((path.parent / RETRAINED).read_text())
        return {**{k: facts[k] for k in ("trials", "chosen_trial", "search_wall_s", "chosen")},
                "config_from_record": facts["record"]}
    if not path.exists():
        return {}
    summary = json.loads(path.read_text())
    trials = [json.loads(line) for line in (path.parent / "trials.jsonl").read_text().splitlines()]
    facts = {"trials": summary["trials"], "chosen_trial": summary["chosen_trial"],
             "search_wall_s": round(sum(t["wall_seconds"] for t in trials), 1),
             "chosen": {k: summary["chosen"][k] for k in ("embed_dim", "hidden", "dropout", "weight_decay",
                                                           "learning_rate", "adaptor_hidden", "top_k", "mask_rate",
                                                           "fusion", "mask_by")}}
    return facts if model else {"config": f"{family(label)}'s tuned config ({summary['trials']} trials)"}


def build_rows(args: argparse.Namespace, seeds: list[int]) -> tuple[dict, list[int]]:
    loaded = {label: load_runs(folder, seeds) for label, folder in row_folders(args).items()}
    loaded = {label: runs for label, runs in loaded.items() if runs}
    if not loaded:
        raise SystemExit("no run finished yet: nothing to tabulate")
    anchor = "DIN" if "DIN" in loaded else next(iter(loaded))  # the seeds every row is cut to, if need be
    common_seeds = [s for s in seeds if all(s in runs for runs in loaded.values())]
    if not common_seeds:  # rows that lack the first seeds are left out rather than compared on other seeds
        common_seeds = [s for s in seeds if s in loaded[anchor]]
        loaded = {label: runs for label, runs in loaded.items() if all(s in runs for s in common_seeds)}
    rows = {}
    for label, runs in loaded.items():
        metrics = [runs[s][0] for s in common_seeds]
        rows[label] = {**{k: mean_std([m["test"][k] for m in metrics]) for k in ("auc", "gauc", "logloss")},
                       "val_auc": mean_std([m["val"]["auc"] for m in metrics]),
                       "best_epochs": [m["best_epoch"] for m in metrics], "epochs_cap": metrics[0]["epochs_cap"],
                       "below_cap": all(m["best_epoch"] < m["epochs_cap"] for m in metrics),
                       "train_seconds": [m["train_seconds"] for m in metrics],
                       "samples_per_s": mean_std([m["samples_per_s"] for m in metrics]),
                       "peak_rss_mb": max(m["peak_rss_mb"] for m in metrics), "slices": slice_means(metrics),
                       **tune_facts(args, label)}
        if all("gain" in m for m in metrics):
            rows[label]["gain_network"] = {"auc": mean_std([m["gain"]["test"]["auc"] for m in metrics]),
                                           "val_auc": mean_std([m["gain"]["val"]["auc"] for m in metrics])}
        base = BACKBONE.get(family(label))
        if base in loaded:
            rows[label]["vs"] = base
            rows[label]["paired"] = paired_with(args, loaded, label, base, common_seeds)
        # the reference of an MSD row: its own family's row of that name ("MSD-DIN" -> "MSD-DeepFM" for those)
        own = family(label)
        reference = own if args.reference in MSD.values() else f"{own}, {args.reference}"
        if own in MSD.values() and reference in loaded and label != reference:
            rows[label]["vs_reference"] = reference
            rows[label]["paired_reference"] = paired_with(args, loaded, label, reference, common_seeds)
    for row in rows.values():
        if "vs" in row:
            row["relaimpr"] = rela_impr(row["auc"]["mean"], rows[row["vs"]]["auc"]["mean"])
    return rows, common_seeds


def paired_with(args: argparse.Namespace, loaded: dict, label: str, base: str, seeds: list[int]) -> dict:
    """Per-seed paired test-AUC deltas of row `label` over row `base`, interval over test users (ctr.paired),
    on all test rows and on those of rare items (<= RARE train rows: where knowledge should matter)."""
    runs, test = loaded[label], loaded[label][seeds[0]][1]
    if not np.array_equal(test["label"].to_numpy(), loaded[base][seeds[0]][1]["label"].to_numpy()):
        raise SystemExit(f"{label} and {base} were not scored on the same test rows")
    labels, users = test["label"].to_numpy(), test["user_id"].to_numpy()
    rare = rare_rows(args.data)[test["row"].to_numpy()]
    return with_rare(labels, users, [loaded[base][s][1]["prob"].to_numpy() for s in seeds],
                     [runs[s][1]["prob"].to_numpy() for s in seeds], rare, args.n_boot)


def fmt(m: dict) -> str:
    return f"{m['mean']:.4f} +- {m['std']:.4f}"


def table_text(rows: dict) -> str:
    w = max(30, *(len(label) for label in rows))  # the label column
    lines = [f"{'model':{w}} {'test AUC':>17} {'GAUC':>17} {'LogLoss':>8} {'delta vs base [95% users]':>36} "
             f"{'p (t)':>6} {'+seeds':>6} {'RelaImpr':>8}  best epochs (cap)"]
    for label, r in rows.items():
        p = r.get("paired")
        delta = (f"{p['mean_delta']:+.4f} [{p['ci95_users'][0]:+.4f}, {p['ci95_users'][1]:+.4f}] vs {r['vs']}"
                 if p else "-")
        pt = f"{p['paired_t']['p']:.3f}" if p and "paired_t" in p else "-"
        plus = f"{p['seeds_positive']}/{p['seeds']}" if p else "-"
        rel = f"{100 * r['relaimpr']:+.2f}%" if r.get("relaimpr") is not None else "-"
        lines.append(f"{label:{w}} {fmt(r['auc']):>17} {fmt(r['gauc']):>17} {r['logloss']['mean']:>8.4f} {delta:>36} "
                     f"{pt:>6} {plus:>6} {rel:>8}  {r['best_epochs']} ({r['epochs_cap']})")
    for label, r in rows.items():
        if "gain_network" in r:
            lines.append(f"{label:{w}} its gain network (MSD-DIN inside ELEC, not served): test AUC "
                         f"{fmt(r['gain_network']['auc'])}")
        if "paired_reference" in r:
            p = r["paired_reference"]
            lines.append(f"{label:{w}} vs {r['vs_reference']}: {p['mean_delta']:+.4f} "
                         f"[{p['ci95_users'][0]:+.4f}, {p['ci95_users'][1]:+.4f}] (95% over test users), "
                         f"{p['seeds_positive']}/{p['seeds']} seeds positive")
    key = f"items_le_{RARE}"
    for label, r in rows.items():  # the same pairings on the test rows of rare items
        for name in ("paired", "paired_reference"):
            p = (r.get(name) or {}).get(key)
            if p:
                versus = r["vs"] if name == "paired" else r["vs_reference"]
                lines.append(f"{label:{w}} vs {versus}, items with <= {RARE} train rows ({p['rows']:,} test rows): "
                             f"{p['mean_delta']:+.4f} [{p['ci95_users'][0]:+.4f}, {p['ci95_users'][1]:+.4f}], "
                             f"{p['seeds_positive']}/{p['seeds']} seeds positive")
    lines.append("")
    lines.append(f"{'slice AUC (test, mean over seeds)':{w}} " + " | ".join(
        f"{fam}:{name}" for fam, b in next(iter(rows.values()))["slices"].items() for name in b))
    for label, r in rows.items():
        cells = [f"{s['auc']['mean']:.4f}" if s["auc"] else "-" for b in r["slices"].values() for s in b.values()]
        lines.append(f"{label:{w}} " + " | ".join(cells))
    first = next(iter(rows.values()))["slices"]
    lines.append(f"{'rows':{w}} " + " | ".join(f"{s['rows']:,}" for b in first.values() for s in b.values()))
    return "\n".join(lines)


def title(args: argparse.Namespace) -> str:
    card = json.loads((args.data / "card.json").read_text())
    return card.get("title", card["dataset"])


def tabulate(args: argparse.Namespace, seeds: list[int], started: float) -> None:
    rows, used = build_rows(args, seeds)
    text = table_text(rows)
    print(f"\n{title(args)}: tuned models and controls (seeds {used}; paired deltas vs the backbone)\n{text}\n",
          flush=True)
    card = json.loads((args.data / "card.json").read_text())
    record("ctr", {"table": "tuned", "dataset": title(args), "data": str(args.data), "protocol": card["protocol"],
                   "fields": card["fields"], "splits": card["splits"],
                   "knowledge": {"folder": str(args.knowledge), "label": args.label}, "seeds": used,
                   "vectors": vector_sets(args),
                   "reference": args.reference,
                   "settings": args.train_args, "trials_per_model": args.trials, "choice": choice(args),
                   "controls": {"shuffled": "the knowledge vectors permuted across items",
                                "random": "N(0, 1) vectors, dim 64 (user level = history mean of them)",
                                ORACLES[args.oracle]: f"POSITIVE CONTROL: {ORACLE_TEXT[args.oracle]}"},
                   "rows": rows, "bench_wall_s": round(time.time() - started, 1), "printed": text,
                   **({"note": args.note} if args.note else {})})


# --- the LoRA and cost tables (fixed settings) ------------------------------------------

def summarise(runs: list[dict]) -> dict:
    """Mean +- std over seeds of the test figures, training speed and memory."""
    out = {k: mean_std([r["test"][k] for r in runs]) for k in ("auc", "gauc", "logloss")}
    out["samples_per_s"] = mean_std([r["samples_per_s"] for r in runs])
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    out["best_epochs"] = [r["best_epoch"] for r in runs]
    out["train_samples"] = runs[0]["train_samples"]
    out["test_samples"] = runs[0]["test"]["samples"]
    return out


def table(rows: dict[str, dict], base: str | None) -> str:
    lines = [f"{'model':28} {'AUC':>17} {'GAUC':>17} {'LogLoss':>17} {'RelaImpr':>9} {'samples/s':>10} {'RSS MB':>7} best epochs"]
    for name, s in rows.items():
        value = rela_impr(s["auc"]["mean"], rows[base]["auc"]["mean"]) if base in rows else None
        rel = f"{100 * value:+.2f}%" if value is not None else "-"
        lines.append(f"{name:28} {fmt(s['auc']):>17} {fmt(s['gauc']):>17} {fmt(s['logloss']):>17} {rel:>9} "
                     f"{s['samples_per_s']['mean']:>10,.0f} {s['peak_rss_mb']:>7,.0f} {s['best_epochs']}")
    return "\n".join(lines)


def run_table(name: str, variants: dict[str, list[str]], common_args: list[str], runs: Path, seeds: list[int]) -> dict:
    folders = {label: runs / name / "_".join(a.lstrip("-") for a in args) for label, args in variants.items()}
    done = {label: [train_run(folders[label] / f"seed-{s}", [*common_args, *args, "--seed", str(s)]) for s in seeds]
            for label, args in variants.items()}
    return {label: summarise(r) for label, r in done.items()}


def fixed_tables(args: argparse.Namespace, name: str, seeds: list[int]) -> None:
    base = ["--data", str(args.data), "--knowledge", str(args.knowledge)]
    if name == "lora":
        rows = run_table("lora-slice", LORA, [*base, *args.lora_args.split(), "--max-train-samples", str(args.slice),
                                              "--max-eval-samples", str(args.eval_slice)], args.runs, seeds)
        text = table(rows, next(iter(rows)))
    else:
        cost_dir = args.runs / "cost"
        shutil.rmtree(cost_dir, ignore_errors=True)  # speed is measured now, never reused
        rows = {**run_table("cost", COST_MAIN, [*base, *args.train_args.split(), "--epochs", "1",
                                                "--max-train-samples", str(args.cost_slice)], args.runs, [0]),
                **run_table("cost", COST_LORA, [*base, *args.lora_args.split(), "--max-train-samples", "64",
                                                "--max-eval-samples", "64"], args.runs, [0])}
        text = table(rows, None)
    print(f"\n{title(args)}: {name}\n{text}\n", flush=True)
    record("ctr", {"table": name, "dataset": title(args), "data": str(args.data),
                   "knowledge": {"folder": str(args.knowledge), "label": args.label}, "seeds": seeds,
                   "settings": {"train": args.train_args, "lora": args.lora_args, "slice": args.slice,
                                "cost_slice": args.cost_slice}, "rows": rows, "printed": text})


# --- command line ---------------------------------------------------------------------

def common(args: argparse.Namespace) -> list[str]:
    return ["--data", str(args.data), *args.train_args.split()]


def run_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options every CTR bench shares: prepared data, knowledge tables, their label, run folder, seeds."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--knowledge", type=Path, required=True)
    p.add_argument("--label", required=True, help="What the knowledge vectors are (stated in the results).")
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--seeds", default="0,1,2")
    return p


def main() -> None:
    p = run_arguments(__doc__)
    p.add_argument("--stages", default="fusion,tune,controls,table",
                   help="fusion, mask, tune, retrain, controls, vectors, ablation, protocol, table, lora, cost (comma list, in "
                        "order).")
    p.add_argument("--trials", type=int, default=6, help="Random-search trials per tuned model (the same for each).")
    p.add_argument("--models", default="deepfm,din,msd", help="The models the tune stage tunes, and the MSD models "
                   "(msd, msd-deepfm) the vectors stage trains (two benches may split them between them: each "
                   "model's tune folder must have one bench at a time).")
    p.add_argument("--train-args", default="--max-history 20 --epochs 30 --patience 2 --batch-size 1024",
                   help="Settings every run shares (kept out of the search).")
    p.add_argument("--n-boot", type=int, default=1000, help="Bootstrap draws of test users.")
    p.add_argument("--vectors", action="append", default=[], metavar="LABEL=FOLDER",
                   help="vectors stage: MSD-DIN rows at MSD's tuned config with these tables (repeatable).")
    p.add_argument("--user-vectors", action="append", default=[], metavar="LABEL=FOLDER",
                   help="vectors stage: MSD-DIN rows that read FOLDER's item AND user tables (user_source table: "
                   "each user's users.jsonl snapshot, their rows after its time only), e.g. KAR's user knowledge (repeatable).")
    p.add_argument("--reference", default=None, metavar="LABEL", help="A --vectors LABEL (or MSD-DIN, the tuned row on "
                   "--knowledge) every other MSD-DIN row is also paired with (the raw-text control: does the LLM add "
                   "anything over the text itself?).")
    p.add_argument("--other-data", type=Path, default=None, help="protocol stage: another prepared folder (e.g. "
                   "`ctr prepare --protocol rechorus`) for DeepFM and DIN at their tuned configs.")
    p.add_argument("--slice", type=int, default=128, help="Train rows for the LoRA table.")
    p.add_argument("--eval-slice", type=int, default=256, help="Val / test rows for the LoRA table.")
    p.add_argument("--cost-slice", type=int, default=50000, help="Train rows of the cost table's DIN/MSD runs.")
    p.add_argument("--oracle", choices=tuple(ORACLES), default="click-rate", help="The positive control of the "
                   "controls stage and the judge of the fusion and mask stages: the item's click rate over all splits "
                   "(void under popularity-matched negatives, as Online Retail's), or its co-click factor.")
    p.add_argument("--from-record", default=None, metavar="DATE", help="retrain stage: the date of the tuned "
                   "table whose DeepFM / DIN configs are trained again.")
    p.add_argument("--note", default=None, help="table stage: a sentence recorded with the table (e.g. where a row's "
                   "config came from).")
    p.add_argument("--lora-args", default="--embed-dim 8 --batch-size 8 --max-history 3 --epochs 1 --lr 0.001")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.time()
    print(f"bench_ctr: load {os.getloadavg()[0]:.1f}", flush=True)
    for stage in args.stages.split(","):
        if stage == "fusion":
            choose(args, "fusion", FUSIONS, {})
        elif stage == "mask":
            choose(args, "mask_by", MASK_BY, {"fusion": choice(args).get("fusion", CTRConfig.fusion)})
        elif stage == "tune":
            tune(args, seeds)
        elif stage == "retrain":
            retrain(args, seeds)
        elif stage == "controls":
            controls(args, seeds)
        elif stage == "ablation":
            ablation(args, seeds)
        elif stage == "vectors":
            vectors(args, seeds)
        elif stage == "table":
            tabulate(args, seeds, started)
        elif stage == "protocol":
            protocol_table(args, seeds)
        elif stage in ("lora", "cost"):
            fixed_tables(args, stage, seeds)
        else:
            raise SystemExit(f"unknown stage {stage!r}")


if __name__ == "__main__":
    main()
