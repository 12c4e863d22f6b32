"""Teacher backends: `openai`, `vllm`, `transformers`, behind one small interface."""
