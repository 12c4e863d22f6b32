"""A peer engine on the same prompts: llama.cpp (llama-cpp-python) on the embedded Q4_1 GGUF, greedy, text format.

Run by bench_teacher.py for a setting `llamacpp:1`, in its own process, with the same tasks file and the same
output layout as teacher_run.py (bare answers only). The prompts are tokenised by the HF tokenizer kgen uses, so
both engines see the same token ids; llama.cpp keeps the previous prompt's keys/values and recomputes only from the
first token that differs, so the prompts are taken in token order like kgen's loop does. One sequence at a time (the
Python API decodes one). Stops like kgen's text format: EOS, a finished Key Features line, a loop, or the limit.
Answers in the json format would need llama.cpp's own grammar (GBNF) in place of llguidance: not measured here.

    PYTHONPATH=$PWD python bench/peer_llama_cpp.py --tasks tasks.json --out run.json --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

from kgen.models import embedded_gguf_path, resolve_llm
from kgen.run import MESSAGES
from kgen.teachers.base import Completion, GenerationSettings
from kgen.teachers.transformers_backend import cut_repetition, key_features_done, looping


def answer(llm, tokenizer, prompt: list[int], settings: GenerationSettings) -> Completion:
    """One greedy answer, stopped by kgen's text-format rules."""
    tokens: list[int] = []
    for token in llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        tokens.append(token)
        if token == tokenizer.eos_token_id or len(tokens) >= settings.max_new_tokens:
            break
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        if key_features_done(text) or looping(text):
            break
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    cut_off = (len(tokens) >= settings.max_new_tokens or looping(text)) and not key_features_done(text)
    return Completion(cut_repetition(text).strip(), "truncated" if cut_off else "ok", len(prompt), len(tokens))


def main() -> None:
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=2)
    a, _ = p.parse_known_args()  # bench_teacher passes teacher_run's options too
    spec = json.loads(a.tasks.read_text())
    settings = GenerationSettings(**spec["settings"])
    if settings.structured:
        raise SystemExit("peer_llama_cpp measures the text format only")
    tokenizer = AutoTokenizer.from_pretrained(resolve_llm(None))
    prompts = [tokenizer.apply_chat_template(t[MESSAGES], add_generation_prompt=True, tokenize=True, return_dict=True)
               ["input_ids"] for t in spec["tasks"]]
    llm = Llama(str(embedded_gguf_path()), n_ctx=2048, n_batch=512, n_threads=a.threads, n_threads_batch=a.threads,
                verbose=False)
    answer(llm, tokenizer, prompts[0][:50], GenerationSettings(max_new_tokens=4))  # warm-up
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    load, wall, cpu = os.getloadavg(), time.perf_counter(), time.process_time()
    done = {i: answer(llm, tokenizer, prompts[i], settings) for i in order}
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    answers = [{"index": i, "text": c.text, "status": c.status, "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens, "error": None} for i, c in sorted(done.items())]
    a.out.write_text(json.dumps({"torch_threads": a.threads, "batch_size": 1, "options": {"engine": "llama.cpp Q4_1"},
                                 "bare": {"wall_s": wall, "cpu_s": cpu, "load_avg": load, "answers": answers},
                                 "load_avg_after": os.getloadavg(),
                                 "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
