"""Plant each bug of issues #13 and #23 in this checkout, run the tests that should catch it, record the failures, revert.

Run from a checkout root: .venv/bin/python scripts/check_planted_bugs.py [name ...] (a clean checkout: it edits files and restores them with git checkout)
Writes one JSON line per plant to stdout. `23.` runs the plants of issue #23 (its 11 promises, 23.1 - 23.11, and
the same kinds of promise elsewhere, 23.sN); `23.3` runs those of promise 3 alone.
"""

import json
import os
import re
import subprocess
import sys
import time

RUN = ["tests/kgen/test_run.py"]
CLI = ["tests/kgen/test_kgen_cli.py"]
OPENAI = ["tests/test_teacher_openai.py"]
PLANTS = {
    "1 numbers rule or->and": ("eval/keyphrase_f1.py", "bool(a or b) and a != b", "bool(a and b) and a != b",
                               ["tests/test_keyphrase_f1.py", "tests/ground/test_normalize.py"]),
    "2 interval 2.5/97.5->25/75": ("eval/keyphrase_f1.py", "[2.5, 97.5]", "[25, 75]",
                                   ["tests/test_keyphrase_f1.py", "tests/test_eval_f1_cli.py"]),
    "3 append_line: no flush, no fsync": ("ground/files.py", "    fh.flush()\n    os.fsync(fh.fileno())\n\n\n@contextmanager\ndef atomic_folder",
                                          "\n\n@contextmanager\ndef atomic_folder", RUN),
    "3a append_line: no fsync only": ("ground/files.py", "    fh.flush()\n    os.fsync(fh.fileno())\n\n\n@contextmanager\ndef atomic_folder",
                                      "    fh.flush()\n\n\n@contextmanager\ndef atomic_folder", RUN),
    "3b append_line: no flush only": ("ground/files.py", "    fh.flush()\n    os.fsync(fh.fileno())\n\n\n@contextmanager\ndef atomic_folder",
                                      "    os.fsync(fh.fileno())\n\n\n@contextmanager\ndef atomic_folder", RUN),
    "4 output lock a no-op": ("kgen/run.py", "fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass", RUN + CLI),
    "5 408 not retried": ("kgen/teachers/openai_backend.py", "frozenset({408, 429})", "frozenset({429})", OPENAI),
    "6 reparse truncated->ok": ("kgen/run.py", 'keep = None if row[R.STATUS] in ("ok", "parse_error") else',
                                'keep = None if row[R.STATUS] in ("ok", "parse_error", "truncated") else',
                                RUN + CLI + ["tests/kgen/test_parse.py"]),
    "7 torn-line handling removed": ("kgen/run.py", "        if last and not line.endswith(\"\\n\") and line.startswith('{\"'):\n            return None\n",
                                     "", RUN),
    "x1 unreadable retry-after-ms: no fallback": ("kgen/teachers/openai_backend.py",
                                                  "            pass  # an unreadable value: fall back", "            return None  # planted", OPENAI),
    "x2 retry-after not capped": ("kgen/teachers/openai_backend.py", "return min(retry_after, cap)", "return retry_after", OPENAI),
    "x3 retry-after over-waited (x2)": ("kgen/teachers/openai_backend.py", "return min(retry_after, cap)", "return min(2 * retry_after, cap)", OPENAI),
    "x4 no choices not caught": ("kgen/teachers/openai_backend.py", "    if not response.choices:\n        return Completion(\"\", \"api_error\", error=\"the response held no choices\")\n", "", OPENAI),
    "x5 content None not caught": ("kgen/teachers/openai_backend.py", "    if choice.message.content is None:", "    if False:", OPENAI),
    "x6 reparse drops api_error message": ("kgen/run.py", 'if parsed.error and keep != "api_error":', "if parsed.error:", RUN + CLI),
    "x8 torn line cut inside a character read as bad UTF-8": ("kgen/run.py", "read_lines(path, torn_tail=True)", "read_lines(path)", RUN),
    "x7 store save version check removed": ("annotate/store.py", "            if current != expected_version:\n                return SaveResult(False, current, True, f\"stored version is",
                                            "            if False:\n                return SaveResult(False, current, True, f\"stored version is",
                                            ["tests/annotate/test_annotate_store.py"]),
}
# Issue #23: promises that a one-line bug broke silently, then their siblings (the same kind of promise elsewhere).
CTR_P = "tests/ctr/test_promises_ctr.py"
TRAIN = ["tests/ctr/test_ctr_train.py", CTR_P]
RETAIL = ["tests/ctr/test_prepare_retail.py", CTR_P]
PREP = ["tests/ctr/test_prepare_retail.py", "tests/ctr/test_prepare_movielens.py", "tests/ctr/test_prepare_output.py"]
SERVE = ["tests/ctr/test_serve.py", CTR_P]
KGEN_P = "tests/kgen/test_promises_kgen.py"
EVAL_P = "tests/test_promises_eval.py"
TAU = ["tests/test_keyphrase_f1.py", "tests/test_eval_f1_cli.py", EVAL_P]
PLANTS.update({
    "23.1a retail negatives: uniform Gumbel keys": (
        "ctr/prepare_retail.py", "keys = np.log(weight)[None, :] + rng.gumbel(size=(len(k), len(weight)))",
        "keys = rng.gumbel(size=(len(k), len(weight)))", RETAIL),
    "23.1b retail negatives: every item weighs 1": (
        "ctr/prepare_retail.py", "month_sold.to_numpy(dtype=float), rng)", "np.ones(len(month_sold)), rng)", RETAIL),
    "23.2 GAUC: rows not grouped by user": (
        "ctr/metrics.py", 'order = np.argsort(users, kind="stable")', "order = np.arange(len(users))",
        ["tests/ctr/test_ctr_metrics.py", CTR_P]),
    "23.3a best epoch and early stopping on test": (
        "ctr/train.py", 'result = fit(model, splits["train"], splits["val"], config)',
        'result = fit(model, splits["train"], splits["test"], config)', TRAIN),
    "23.3b an equal val AUC counts as better": (
        "ctr/train.py", "better = val_auc > best_auc", "better = val_auc >= best_auc", TRAIN),
    "23.3c early stopping one epoch late": (
        "ctr/train.py", "if epoch - best_epoch >= config.patience:", "if epoch - best_epoch > config.patience:", TRAIN),
    "23.3d last epoch's weights kept": (
        "ctr/train.py", "    model.load_state_dict(result.best_state, strict=False)\n    model.train()",
        "    model.train()", TRAIN),
    "23.4 top-k fusion by dot product": (
        "ctr/knowledge.py", "sim = F.cosine_similarity(target.unsqueeze(1), history, dim=-1)",
        "sim = (target.unsqueeze(1) * history).sum(-1)", ["tests/ctr/test_ctr_knowledge_model.py", CTR_P]),
    "23.5 masking frequencies counted on every split": (
        "ctr/data.py", 'train = data.split("train")[R.ITEM_ID].to_numpy()', "train = data.samples[R.ITEM_ID].to_numpy()",
        ["tests/ctr/test_ctr_knowledge_model.py", *TRAIN]),
    "23.6 serving keeps the oldest history": (
        "ctr/scoring.py", "history[-self.max_history:] + candidates", "history[:self.max_history] + candidates", SERVE),
    "23.7a augmentation replaces inside words": (
        "distill/augment.py", 'rf"(?<!\\w)(?:{alternation})(?!\\w)"', 'rf"(?:{alternation})"',
        ["tests/distill/test_distill_augment.py", "tests/distill/test_distill_data.py", "tests/distill/test_promises_distill.py"]),
    "23.7b augmentation replaces word beginnings": (
        "distill/augment.py", 'rf"(?<!\\w)(?:{alternation})(?!\\w)"', 'rf"(?<!\\w)(?:{alternation})"',
        ["tests/distill/test_distill_augment.py", "tests/distill/test_promises_distill.py"]),
    "23.8 Spearman breaks ties by position": (
        "eval/correlate.py", "rankdata(x, axis=1), rankdata(y, axis=1)",
        'rankdata(x, axis=1, method="ordinal"), rankdata(y, axis=1, method="ordinal")', ["tests/test_correlate.py", EVAL_P]),
    "23.9a one-shot: equal texts not banned": (
        "kgen/reference.py", "banned = same | (sim >= near_duplicate)", "banned = sim >= near_duplicate",
        ["tests/kgen/test_reference.py", KGEN_P]),
    "23.9b one-shot: texts compared unnormalised": (
        "kgen/reference.py", 'norm = lambda s: " ".join(s.casefold().split())', "norm = lambda s: s",
        ["tests/kgen/test_reference.py", KGEN_P]),
    "23.10 leaked: phrases of the input too": (
        "kgen/grounding.py", "is_grounded(phrase, example) and not is_grounded(phrase, source)",
        "is_grounded(phrase, example)", ["tests/kgen/test_grounding.py", KGEN_P]),
    "23.11 gold unanimity ignores the types": (
        "annotate/gold.py", "frozenset((normalize_phrase(r[PHRASE]), r[TYPE]) for r",
        "frozenset((normalize_phrase(r[PHRASE]), \"\") for r",
        ["tests/annotate/test_annotate_gold.py", "tests/annotate/test_promises_annotate.py"]),
    # siblings: "best" picked on a split
    "23.s1 ELEC validates and stops on the gain network": (
        "ctr/elec.py", "return self.vanilla(batch)  # (B,) logits", "return self.gain(batch)  # (B,) logits",
        ["tests/ctr/test_elec.py", CTR_P]),
    "23.s2 bench_elec early-stops on test": (
        "bench/bench_elec.py", 'result = fit(model, splits["train"], splits["val"], config)',
        'result = fit(model, splits["train"], splits["test"], config)', [CTR_P]),
    "23.s3 distill train evaluates on the train split": (
        "distill/train.py", "eval_dataset=val,", "eval_dataset=train,",
        ["tests/distill/test_distill_train.py", "tests/distill/test_promises_distill.py"]),
    "23.s4 distill load_splits: validation = train": (
        "distill/train.py", 'val = splits["validation"].select_columns', 'val = splits["train"].select_columns',
        ["tests/distill/test_distill_train.py", "tests/distill/test_promises_distill.py"]),
    "23.s5 tau: first of the tied values": (
        "eval/calibrate.py", "tau = tied[len(tied) // 2]", "tau = tied[0]", TAU),
    "23.s6 tau: similarity == tau is not a match": (
        "eval/calibrate.py", "pred = sims >= tau", "pred = sims > tau", TAU),
    "23.s7 tau picked by accuracy": (
        "eval/calibrate.py", 'tied = [t for t, s in table if (s["f1"], s["accuracy"]) == best]',
        'tied = [t for t, s in table if s["accuracy"] == max(v["accuracy"] for _, v in table)]', TAU),
    # siblings: frequencies and statistics counted from a split
    "23.s8 retail negatives: popularity over all months": (
        "ctr/prepare_retail.py", 'month_sold = sold[sold["month"] == month].groupby("StockCode").size()',
        'month_sold = sold.groupby("StockCode").size()[lambda s: s.index.isin(sold.loc[sold["month"] == month, "StockCode"])]',
        RETAIL),
    "23.s9 training vocabularies from every split": (
        "ctr/runs.py", 'build_features(data.split("train"), data.card)', "build_features(data.samples, data.card)", TRAIN),
    "23.s10 items.jsonl stats from every split": (
        "ctr/prepare.py", '    train = samples[samples[SPLIT] == "train"]\n    exposures', "    train = samples\n    exposures", PREP),
    "23.s11 users.jsonl histories from every split": (
        "ctr/prepare.py", 'train_clicks = samples[(samples[SPLIT] == "train") & (samples[R.LABEL] == 1)]',
        "train_clicks = samples[samples[R.LABEL] == 1]", PREP),
    # siblings: the most recent items of a history
    "23.s12 serving user fields from the first sample": (
        "ctr/scoring.py", 'drop_duplicates(R.USER_ID, keep="last")', 'drop_duplicates(R.USER_ID, keep="first")', SERVE),
    "23.s13 training histories keep the oldest items": (
        "ctr/data.py", "keys[np.repeat(ends - kept, kept) + cols]", "keys[np.repeat(ends - lengths, kept) + cols]", TRAIN),
    "23.s14 user text shows the oldest items": (
        "kgen/inputs.py", "recent = [str(i) for i in user[HISTORY]][-max_history:]",
        "recent = [str(i) for i in user[HISTORY]][:max_history]", ["tests/test_inputs.py", KGEN_P]),
    "23.s15 clipping judged on the oldest items": (
        "kgen/inputs.py", "for i in row[HISTORY][-max_history:]]", "for i in row[HISTORY][:max_history]]",
        ["tests/test_inputs.py", "tests/kgen/test_run.py", KGEN_P]),
    "23.s16 users.jsonl keeps the oldest clicks": (
        "ctr/prepare.py", "history.get(user_id, [])[-max_history:]", "history.get(user_id, [])[:max_history]", PREP),
    # siblings: metrics with ties or groups
    "23.s17 paired ratio resamples the two sides apart": (
        "eval/paired.py", "sa, sb = a[idx].mean(axis=1), b[idx].mean(axis=1)",
        "sa, sb = a[idx].mean(axis=1), b[idx[::-1]].mean(axis=1)", ["tests/test_baselines.py", "tests/test_eval_f1_cli.py"]),
    "23.s18 F1 bootstrap counts mixed across resamples": (
        "eval/keyphrase_f1.py", "minlength=b * n).reshape(b, n)", "minlength=b * n).reshape(n, b).T",
        ["tests/test_keyphrase_f1.py"]),
    "23.s19 agreement F1 by type ignores the type": (
        "annotate/agreement.py", "num, den = _pair_counts(x.doc, y.doc, kind)", "num, den = _pair_counts(x.doc, y.doc, None)",
        ["tests/annotate/test_annotate_gold.py"]),
    "23.s20 ctr warm stores the least exposed items": (
        "ctr/scoring.py", "key=lambda r: -int((r.get(R.STATS) or {}).get(R.EXPOSURES, 0))",
        "key=lambda r: int((r.get(R.STATS) or {}).get(R.EXPOSURES, 0))", SERVE),
    "23.s21 z-scoring statistics over absent rows too": (
        "ctr/knowledge.py", "rows = vectors[present]", "rows = vectors",
        ["tests/ctr/test_ctr_knowledge_model.py", "tests/ctr/test_serve.py"]),
    "23.s22 kgen sample ignores the weights": (
        "kgen/sample.py", "keys = np.log(rng.random(len(weights))) / np.asarray(weights, dtype=float)",
        "keys = np.log(rng.random(len(weights)))", ["tests/test_sample.py"]),
})

# Issue 23 section 1: the openai backend's structured-output negotiation and its gate.
PLANTS.update({
    '23.oai.1 refusal only on 400/422': (
        'kgen/teachers/openai_backend.py', 'if not isinstance(exc, openai.APIStatusError) or exc.status_code in _RETRY_STATUSES:',
        'if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):',
        ["tests/test_teacher_openai.py"]),
    '23.oai.2 no negotiation lock': (
        'kgen/teachers/openai_backend.py', '            async with negotiating:\n                if self.structured_form is None:\n                    return await self._negotiate(request)',
        '            return await self._negotiate(request)',
        ["tests/test_teacher_openai.py"]),
    '23.oai.3 form not remembered': (
        'kgen/teachers/openai_backend.py', '            self.structured_form = form\n            return completion',
        '            return completion',
        ["tests/test_teacher_openai.py"]),
    '23.oai.4 any 5xx is a refusal': (
        'kgen/teachers/openai_backend.py', '    return any(word in said for word in ("response_format", "json_schema", "schema"))',
        '    return exc.status_code >= 500 or any(word in said for word in ("response_format", "json_schema", "schema"))',
        ["tests/test_teacher_openai.py"]),
    '23.oai.5 json_object without schema': (
        'kgen/teachers/openai_backend.py', 'return {"type": "json_object", "schema": schema}',
        'return {"type": "json_object"}',
        ["tests/test_teacher_openai.py"]),
    '23.oai.6 gate never lowered': (
        'kgen/teachers/openai_backend.py', '        self.limit = max(1, min(self.limit, answered - 1))\n',
        '        pass\n',
        ["tests/test_teacher_openai.py"]),
    '23.oai.6b gate lowered to the answers, not one less': (
        'kgen/teachers/openai_backend.py', '        self.limit = max(1, min(self.limit, answered - 1))\n',
        '        self.limit = max(1, min(self.limit, answered))\n',
        ["tests/test_teacher_openai.py"]),
    '23.oai.6c gate grows every answer': (
        'kgen/teachers/openai_backend.py', 'self._since_change >= GROWTH_WINDOWS * self.limit:',
        'self._since_change >= 1:',
        ["tests/test_teacher_openai.py"]),
    '23.oai.6d gate grows past the concurrency': (
        'kgen/teachers/openai_backend.py', 'if self.limit < self.ceiling and self._since_change',
        'if self._since_change',
        ["tests/test_teacher_openai.py"]),
    '23.oai.7 queueing timeouts charged': (
        'kgen/teachers/openai_backend.py', 'if isinstance(exc, QueuedTimeout) and queue_retries < QUEUE_RETRIES:',
        'if isinstance(exc, QueuedTimeout) and attempts <= self.max_retries:',
        ["tests/test_teacher_openai.py"]),
    '23.oai.8 timeout ignores max_new_tokens': (
        'kgen/teachers/openai_backend.py', '    return TIMEOUT_BASE_S + max_new_tokens / SLOWEST_TOKENS_PER_S',
        '    return TIMEOUT_BASE_S + 384 / SLOWEST_TOKENS_PER_S',
        ["tests/test_teacher_openai.py"]),
    '23.oai.9 lone timeouts free too': (
        'kgen/teachers/openai_backend.py', 'if self.gate.answered > before:',
        'if self.gate.answered >= before:',
        ["tests/test_teacher_openai.py"]),
    '23.oai.10 refusal spends a retry': (
        'kgen/teachers/openai_backend.py', '                self.refused[form] = one_line(describe_error(exc, 1).removesuffix(" (after 1 attempt)"))\n                continue',
        '                raise',
        ["tests/test_teacher_openai.py"]),
})
PY = sys.executable  # the interpreter that runs this script (e.g. .venv/bin/python)
ENV = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def pytest(files: list[str]) -> tuple[str, list[str]]:
    cmd = [PY, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *files]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", done.stdout, re.M)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    return summary, failed


def main(names: list[str]) -> None:
    for name, (path, old, new, files) in PLANTS.items():
        if names and not any(name.startswith(n) for n in names):
            continue
        text = open(path).read()
        assert text.count(old) == 1, (name, text.count(old))
        open(path, "w").write(text.replace(old, new))
        diff = subprocess.run(["git", "diff", "-U0", "--", path], capture_output=True, text=True).stdout
        start = time.time()
        try:
            summary, failed = pytest(files)
        finally:
            subprocess.run(["git", "checkout", "--", path], check=True)
        print(json.dumps({"bug": name, "file": path, "old": old, "new": new, "tests": files, "summary": summary,
                          "failed": failed, "seconds": round(time.time() - start), "diff": diff}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
