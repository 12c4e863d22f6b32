"""Where one batch of the transformers teacher spends its time: prefill, decode, padding, grammar mask, Python.

Runs the embedded SmolLM2-135M-Instruct on the first batch (8 prompts, sorted by length like the backend does)
of the shipped sample's items with the real one-shot teacher prompt, in the text format (the old benchmark's) and
in the json format (kgen's default), through the backend's own `generate` call, with timers around the model's
forward calls, the grammar's logits processor, the stopping criterion, and the tokenisation/decoding around it.
Whatever generate() spends outside those is its own Python overhead. Also counts the padded prompt tokens, the
row-steps spent on rows that had already finished, and the token prefix every prompt shares.

Writes bench/results/teacher_profile.json (and prints a table):

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python bench/profile_teacher.py
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from contextlib import contextmanager

from bench.common import RESULTS
from ground.runinfo import machine
from bench.teacher_prompts import teacher_prompts

import torch

from kgen.teachers import constrained
from kgen.teachers import transformers_backend as tb


class Timers:
    """Seconds and calls per named span."""

    def __init__(self):
        self.seconds, self.calls = defaultdict(float), defaultdict(int)

    @contextmanager
    def span(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1

    def wrap(self, name_of, fn):
        def timed(*args, **kwargs):
            with self.span(name_of(args, kwargs)):
                return fn(*args, **kwargs)
        return timed


def forward_name(args, kwargs) -> str:
    ids = kwargs.get("input_ids")
    return "forward_prefill" if ids is not None and ids.shape[1] > 1 else "forward_decode"


def shared_prefix(token_lists: list[list[int]]) -> int:
    """How many leading tokens every list has in common."""
    n = 0
    for column in zip(*token_lists):
        if len(set(column)) > 1:
            break
        n += 1
    return n


def profile_batch(teacher, prompts, settings, schemas) -> dict:
    """Answer one batch through teacher.complete with spans around its parts; return the figures."""
    from kgen.teachers.decode import Decoder

    timers = Timers()
    lm, tok = teacher.lm, teacher.tokenizer
    forward = timers.wrap(forward_name, lm.forward)
    prefill_tokens = []

    def counted_forward(*args, **kwargs):
        if forward_name(args, kwargs) == "forward_prefill":
            prefill_tokens.append(kwargs["input_ids"].numel())  # padding included
        return forward(*args, **kwargs)

    patches = [(lm, "forward", counted_forward),
               (tok, "apply_chat_template", timers.wrap(lambda a, k: "tokenize", tok.apply_chat_template)),
               (lm, "generate", timers.wrap(lambda a, k: "generate", lm.generate)),
               (teacher, "_completion", timers.wrap(lambda a, k: "decode_answers", teacher._completion))]
    rules = teacher._step_rules

    def timed_rules(settings):
        r = rules(settings)
        return type(r)(choose=timers.wrap(lambda a, k: "choose_token", r.choose),
                       done=timers.wrap(lambda a, k: "stop_criterion", r.done))

    patches.append((teacher, "_step_rules", timed_rules))
    class_patches = [(tb.StopAfterKeyFeatures, "__call__", lambda a, k: "stop_criterion"),
                     (constrained.SchemaLogitsProcessor, "__call__", lambda a, k: "grammar_mask"),
                     (constrained.RowsMasker, "mask", lambda a, k: "grammar_mask"),
                     (constrained.RowsMasker, "consume", lambda a, k: "grammar_mask"),
                     (Decoder, "prefill", lambda a, k: "prefill_calls")]
    originals = [(cls, name, getattr(cls, name)) for cls, name, _ in class_patches]
    for obj, name, fn in patches:
        setattr(obj, name, fn)
    for cls, name, name_of in class_patches:
        setattr(cls, name, timers.wrap(name_of, getattr(cls, name)))
    try:
        start = time.perf_counter()
        completions = dict(teacher.complete(prompts, settings, schemas))
        wall = time.perf_counter() - start
    finally:
        for obj, name, _ in patches:
            vars(obj).pop(name, None)
        for cls, name, fn in originals:
            setattr(cls, name, fn)
    return {"wall_s": wall, "timers": timers, "completions": [completions[i] for i in range(len(prompts))],
            "prefill_tokens": sum(prefill_tokens)}


def padding_figures(tok, prompts, completions) -> dict:
    ids = [tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
           for p in prompts]
    lengths = [len(i) for i in ids]
    answers = [c.completion_tokens for c in completions]
    steps = max(answers)
    return {"prompt_tokens": lengths, "answer_tokens": answers,
            "prompt_pad_fraction": round(1 - sum(lengths) / (len(lengths) * max(lengths)), 3),
            "decode_finished_row_fraction": round(1 - sum(answers) / (len(answers) * steps), 3),
            "decode_steps": steps, "shared_prefix_tokens": shared_prefix(ids)}


def breakdown(result: dict) -> dict:
    """Seconds per part; `loop_python` is what generate() or the decode loop spends outside the parts named."""
    t = result["timers"]
    s = t.seconds
    choose_rest = max(s["choose_token"] - s["grammar_mask"], 0.0) if s["choose_token"] else 0.0
    parts = {"forward_prefill": s["forward_prefill"], "forward_decode": s["forward_decode"],
             "grammar_mask": s["grammar_mask"], "stop_criterion": s["stop_criterion"], "choose_token": choose_rest,
             "tokenize": s["tokenize"], "decode_answers": s["decode_answers"]}
    wall = result["wall_s"]
    parts["loop_python"] = wall - sum(parts.values())
    return {"wall_s": round(wall, 2), "prefill_calls": t.calls["forward_prefill"],
            "prefill_tokens": result.get("prefill_tokens"),
            "decode_calls": t.calls["forward_decode"],
            "decode_ms_per_step": round(1000 * s["forward_decode"] / max(t.calls["forward_decode"], 1), 1),
            "parts_s": {k: round(v, 2) for k, v in parts.items()},
            "parts_fraction": {k: round(v / wall, 3) for k, v in parts.items()}}


def op_table(teacher, prompts, settings, schemas, rows: int = 15) -> list[dict]:
    """The ops with the most self CPU time over one batch, from torch.profiler (its own overhead included)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        list(teacher.complete(prompts, settings, schemas))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "calls": e.count, "self_s": round(e.self_cpu_time_total / 1e6, 2),
             "fraction": round(e.self_cpu_time_total / total, 3)} for e in events[:rows]]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--formats", nargs="+", default=["text", "json"])
    p.add_argument("--decodings", nargs="+", default=["generate", "auto"])
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    p.add_argument("--ops", action=argparse.BooleanOptionalAction, default=True, help="Also a torch.profiler op table.")
    p.add_argument("--out", default="teacher_profile.json")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    out = {"machine": machine(), "torch_threads": torch.get_num_threads(), "batch_size": a.batch_size, "runs": {}}
    for fmt in a.formats:
        prompts, settings, schemas = teacher_prompts(16, fmt)
        order = sorted(range(len(prompts)), key=lambda i: len(str(prompts[i])))[: a.batch_size]
        batch = [prompts[i] for i in order]
        batch_schemas = [schemas[i] for i in order] if schemas else None
        for decoding in a.decodings:
            teacher = tb.TransformersTeacher("smollm2-135m-instruct", batch_size=a.batch_size, decoding=decoding)
            teacher._load()
            list(teacher.complete(batch[:2], settings, batch_schemas[:2] if batch_schemas else None))  # warm-up
            load = os.getloadavg()
            result = profile_batch(teacher, batch, settings, batch_schemas)
            figures = {"load_avg": load, **breakdown(result),
                       **padding_figures(teacher.tokenizer, batch, result["completions"]),
                       "status": [c.status for c in result["completions"]],
                       "answers": [c.text for c in result["completions"]]}
            if a.ops:
                figures["top_ops"] = op_table(teacher, batch, settings, batch_schemas)
            out["runs"][f"{fmt}/{decoding}"] = figures
            print(fmt, decoding, json.dumps({k: v for k, v in figures.items() if k not in ("top_ops", "answers")}),
                  flush=True)
    out["load_avg_after"] = os.getloadavg()
    path = RESULTS / a.out
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
