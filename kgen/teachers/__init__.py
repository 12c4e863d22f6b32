"""Teacher backends: `openai`, `openai-batch`, `vllm`, `transformers`, behind one small interface (see base.py)."""

from __future__ import annotations

from pathlib import Path

from kgen.models import EMBEDDED_LLM
from ground.errors import ConfigError
from kgen.teachers.base import Teacher

DEFAULT_TEACHER = f"transformers:{EMBEDDED_LLM}"
BACKENDS = ("openai", "openai-batch", "vllm", "transformers")


def parse_teacher(spec: str | None) -> tuple[str, str]:
    """'backend:model' -> (backend, model); None gives the embedded teacher."""
    backend, sep, model = (spec or DEFAULT_TEACHER).partition(":")
    if not sep or not model or backend not in BACKENDS:
        raise ConfigError(f"teacher must be 'backend:model' with backend one of {', '.join(BACKENDS)}; got {spec!r}")
    return backend, model


def teacher_label(spec: str | None) -> str:
    """The `model` field a teacher puts on its records (and in its request keys), without building it."""
    backend, model = parse_teacher(spec)
    return f"{'openai' if backend == 'openai-batch' else backend}:{model}"  # the batch API answers as `openai`


def make_teacher(spec: str | None, batch_size: int = 8, concurrency: int = 16, output: Path | None = None) -> Teacher:
    """Build the named backend; each heavy dependency is imported only when its backend is chosen."""
    backend, model = parse_teacher(spec)
    if backend == "openai-batch":
        from kgen.teachers.openai_batch import OpenAIBatchTeacher, batch_state_path

        if output is None:
            raise ConfigError("the openai-batch teacher keeps its batches beside the output; give the output path")
        return OpenAIBatchTeacher(model, batch_state_path(output))
    if backend == "openai":
        from kgen.teachers.openai_backend import OpenAITeacher

        return OpenAITeacher(model, concurrency=concurrency)
    if backend == "vllm":
        from kgen.teachers.vllm_backend import VLLMTeacher

        return VLLMTeacher(model, batch_size=max(batch_size, 64))
    from kgen.teachers.transformers_backend import TransformersTeacher

    # `transformers:<model>+int8`: the Linear layers in int8 (faster on CPU, other answers: docs/performance.md).
    name, plus, quantize = model.rpartition("+") if model.endswith("+int8") else (model, "", "")
    return TransformersTeacher(name, batch_size=batch_size, quantize=quantize if plus else "none")
