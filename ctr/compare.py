"""DIN vs MSD-DIN on one prepared folder with a given student: the CTR step of the main job (`make demo`).

The student embeds the item names (`distill embed`); MSD's user vector is the mean
of the vectors of each sample's own history items (its clicks strictly before it:
reading every user text is too slow on a CPU, and a table of the user's train
clicks would hold later clicks); both models then train on the same split and
settings for each seed.
"""

from __future__ import annotations

from pathlib import Path

from ctr.train import train_seeds
from ctr.train_config import CTRConfig
from distill.embed import EmbedConfig, embed_tables

# Small and quick: the bundled sample has ~19k train rows, so a larger rate and more epochs than on ML-1M.
DEMO_SETTINGS = {"embed_dim": 8, "max_history": 20, "epochs": 8, "patience": 2, "batch_size": 256, "learning_rate": 3e-3}


def compare_din_msd(prepared: str | Path, student: str | Path, output: str | Path, seeds: tuple[int, ...] = (0, 1, 2),
                    **overrides) -> dict:
    """Embed the items with the student, train DIN and MSD-DIN per seed; return {model: summary} (see train_seeds)."""
    prepared, output = Path(prepared), Path(output)
    knowledge = output / "knowledge"
    embed_tables(EmbedConfig(model=str(student), items=prepared / "items.jsonl", output=knowledge, max_length=32))
    settings = {**DEMO_SETTINGS, **overrides, "data": str(prepared), "knowledge": str(knowledge)}
    return {name: train_seeds(CTRConfig(**settings, output=str(output / name), model=model), list(seeds))
            for name, model in (("DIN", "din"), ("MSD-DIN", "msd"))}


def format_comparison(results: dict) -> str:
    """A small table: test AUC / GAUC / LogLoss, mean +- std over the seeds."""
    lines = [f"{'model':8} {'AUC':>17} {'GAUC':>17} {'LogLoss':>17}"]
    for name, s in results.items():
        cells = [f"{s['test'][k]['mean']:.4f} +- {s['test'][k]['std']:.4f}" for k in ("auc", "gauc", "logloss")]
        lines.append(f"{name:8} " + " ".join(f"{c:>17}" for c in cells))
    return "\n".join(lines)
