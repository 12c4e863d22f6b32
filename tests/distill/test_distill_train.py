"""`distill train` on a tiny random Llama: the loss mask, every parameter learning, LoRA, resume, config."""

import pytest
import torch
from distill_samples import read_json

from distill.data import DataConfig, build_data
from distill.train import build_trainer, load_splits, train
from distill.train_config import TrainConfig, resolve_config
from ground.errors import ConfigError, RecordError


@pytest.fixture
def sft_dir(tmp_path, knowledge_file):
    out = tmp_path / "sft"
    build_data(DataConfig(knowledge=[knowledge_file], output=out, augment=("shuffle",), shuffle_factor=1,
                          val_fraction=0.25))
    return out


def tiny_config(sft_dir, tiny_model, output, **overrides) -> TrainConfig:
    values = dict(data=str(sft_dir), output=str(output), student=str(tiny_model), max_steps=1, batch_size=2,
                  learning_rate=1e-3, warmup_ratio=0.0, lr_scheduler="constant", logging_steps=1, save_steps=100,
                  eval_steps=100, max_length=512)
    return TrainConfig(**{**values, **overrides})


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_the_loss_covers_exactly_the_completion_tokens(sft_dir, tiny_model, tmp_path):
    train_split, _ = load_splits(sft_dir)
    trainer = build_trainer(tiny_config(sft_dir, tiny_model, tmp_path / "run"), train_split, None)
    tokenizer = trainer.processing_class
    rows = [trainer.train_dataset[i] for i in range(3)]
    for row, source in zip(rows, train_split.select(range(3))):
        ids, labels = row["input_ids"], row["labels"]
        learned = [i for i, label in enumerate(labels) if label != -100]
        start = learned[0]
        assert learned == list(range(start, len(ids)))  # one contiguous block up to the end
        assert [labels[i] for i in learned] == [ids[i] for i in learned]
        # The prompt part is the chat-rendered student prompt up to the assistant header, nothing of the answer;
        # the learned part is the teacher's answer and the end-of-turn marker, nothing of the prompt.
        prompt_text = tokenizer.apply_chat_template(source["prompt"], add_generation_prompt=True, tokenize=False)
        assert tokenizer.decode(ids[:start]) == prompt_text
        assert tokenizer.decode(ids[start:]) == source["completion"][0]["content"] + "<|im_end|>\n"
    # The collator keeps that mask and pads labels with -100.
    batch = trainer.data_collator(rows)
    for b, row in enumerate(rows):
        n = len(row["input_ids"])
        assert batch["labels"][b, :n].tolist() == row["labels"]
        assert (batch["labels"][b, n:] == -100).all() and (batch["attention_mask"][b, n:] == 0).all()


def test_one_full_fine_tuning_step_changes_every_parameter(sft_dir, tiny_model, tmp_path):
    train_split, val = load_splits(sft_dir)
    trainer = build_trainer(tiny_config(sft_dir, tiny_model, tmp_path / "run"), train_split, val)
    before = trainable(trainer.model)
    assert len(before) == 2 * 9 + 2  # 2 layers x 9 tensors, final norm, (tied) embeddings
    trainer.train()
    assert trainer.state.global_step == 1
    unchanged = [n for n, p in trainer.model.named_parameters() if n in before and torch.equal(p, before[n])]
    assert unchanged == []


def test_lora_changes_every_adapter_parameter_and_nothing_else(sft_dir, tiny_model, tmp_path):
    # lora_B starts at zero, so lora_A gets no gradient on the first step; after two steps both have moved.
    train_split, val = load_splits(sft_dir)
    trainer = build_trainer(tiny_config(sft_dir, tiny_model, tmp_path / "run", lora=True, max_steps=2), train_split, val)
    params = dict(trainer.model.named_parameters())
    before = trainable(trainer.model)
    frozen = {n: p.detach().clone() for n, p in params.items() if not p.requires_grad}
    assert before and all("lora_A" in n or "lora_B" in n for n in before)
    assert len(before) == 2 * 7 * 2  # 2 layers x 7 projections x (A, B)
    trainer.train()
    assert [n for n in before if torch.equal(params[n], before[n])] == []
    assert [n for n in frozen if not torch.equal(params[n], frozen[n])] == []


def test_train_saves_model_config_metrics_and_resumes_from_the_last_checkpoint(sft_dir, tiny_model, tmp_path):
    out = tmp_path / "run"
    first = train(tiny_config(sft_dir, tiny_model, out, lora=True, max_steps=2, save_steps=1))
    assert first["global_step"] == 2 and first["resumed_from"] is None
    assert first["eval_loss"] is not None and first["peak_rss_mb"] > 0 and first["train_tokens"] > 0
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "train_config.json",
                 "metrics.json", "checkpoint-2"):
        assert (out / name).exists(), name
    assert read_json(out / "train_config.json")["lora"] is True
    second = train(tiny_config(sft_dir, tiny_model, out, lora=True, max_steps=3, save_steps=1))
    assert second["resumed_from"].endswith("checkpoint-2") and second["global_step"] == 3
    assert read_json(out / "metrics.json")["global_step"] == 3
    fresh = train(tiny_config(sft_dir, tiny_model, out, lora=True, max_steps=1, save_steps=1, resume=False))
    assert fresh["resumed_from"] is None and fresh["global_step"] == 1


def test_config_defaults_then_yaml_then_flags(tmp_path):
    yaml_file = tmp_path / "cfg.yaml"
    yaml_file.write_text("data: sft\noutput: runs/a\nlora: true\nbatch_size: 4\nepochs: 2\n")
    config = resolve_config(yaml_file, {"batch_size": 2, "epochs": None, "output": "runs/b"})
    assert (config.data, config.output, config.batch_size, config.epochs) == ("sft", "runs/b", 2, 2)
    assert config.learning_rate == 2e-4 and config.lora_r == 16  # LoRA's default rate; defaults fill the rest
    assert TrainConfig(data="d", output="o").learning_rate == 5e-5  # full fine-tuning's


@pytest.mark.parametrize("values, message", [
    ({"batch_size": 0}, "batch_size must be > 0, got 0"),
    ({"lora_dropout": 1.5}, "lora_dropout must be in \\[0, 1\\), got 1.5"),
    ({"max_steps": 0}, "max_steps must be -1 \\(use epochs\\) or > 0, got 0"),
    ({"lr_scheduler": "cyclic"}, "lr_scheduler must be one of .*got 'cyclic'"),
    ({"epochs": 0}, "epochs must be > 0 when max_steps is not set, got 0"),
])
def test_config_names_the_bad_value(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data="d", output="o", **values)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "cfg.yaml"
    bad.write_text("data: sft\nlearning_rte: 0.1\n")
    with pytest.raises(RecordError, match="cfg.yaml:2: unknown key .learning_rte."):
        resolve_config(bad, {})
    bad.write_text("data: [sft\n")
    with pytest.raises(RecordError, match="cfg.yaml:2: malformed YAML"):
        resolve_config(bad, {})
    with pytest.raises(ValueError, match="output is required"):
        resolve_config(None, {"data": "sft"})


def test_load_splits_refuses_a_folder_that_is_no_dataset(tmp_path):
    with pytest.raises(RecordError, match="not a dataset folder"):
        load_splits(tmp_path)


def test_a_yaml_value_of_the_wrong_type_names_the_line(tmp_path):
    bad = tmp_path / "cfg.yaml"
    bad.write_text("data: sft\noutput: runs/a\nbatch_size: eight\n")
    with pytest.raises(RecordError, match=r"cfg.yaml:3: batch_size must be an integer, got 'eight'"):
        resolve_config(bad, {})
    bad.write_text("data: sft\nlora: yes please\n")
    with pytest.raises(RecordError, match=r"cfg.yaml:2: lora must be true or false, got 'yes please'"):
        resolve_config(bad, {})
    bad.write_text("data: sft\noutput: o\nlearning_rate: 1e-4\nepochs: 2\n")  # YAML 1.1 reads 1e-4 as a string
    assert resolve_config(bad, {}).learning_rate == 1e-4


def test_cli_yaml_type_error_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from distill.cli import app

    bad = tmp_path / "cfg.yaml"
    bad.write_text("data: sft\noutput: o\nmax_length: [1, 2]\n")
    result = CliRunner().invoke(app, ["train", "--config", str(bad)])
    assert result.exit_code == 1 and result.stderr.strip() == f"error: {bad}:3: max_length must be an integer, got [1, 2]"


def test_yaml_that_is_not_utf8_names_the_line(tmp_path):
    bad = tmp_path / "cfg.yaml"
    bad.write_bytes(b"data: sft\noutput: caf\xe9\n")
    with pytest.raises(RecordError, match=r"cfg.yaml:2: not valid UTF-8 \(byte 0xe9 at column 12\)"):
        resolve_config(bad, {})


def test_completion_head_matches_full_logits_in_value_and_gradient():
    from distill.lm_head import completion_log_probs

    torch.manual_seed(0)
    hidden, weight = torch.randn(37, 16, requires_grad=True), torch.randn(100, 16, requires_grad=True)
    targets = torch.randint(0, 100, (37,))
    log_p, entropy, top1 = completion_log_probs(hidden, weight, targets, chunk=8)  # 5 blocks, the last one short
    full = torch.log_softmax(hidden @ weight.t(), -1)  # (37, 100)
    expected = full.gather(-1, targets[:, None]).squeeze(-1)
    assert torch.allclose(log_p, expected, atol=1e-6)
    assert torch.allclose(entropy, -(full.exp() * full).sum(-1), atol=1e-5)
    assert torch.equal(top1, full.argmax(-1) == targets)
    grads = torch.autograd.grad(log_p.sum(), (hidden, weight))
    for ours, theirs in zip(grads, torch.autograd.grad(expected.sum(), (hidden, weight))):
        assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("lora", [False, True])
def test_the_trainers_head_gives_the_models_own_loss(sft_dir, tiny_model, tmp_path, lora, monkeypatch):
    import distill.lm_head

    blocks = []
    block = distill.lm_head._block
    monkeypatch.setattr(distill.lm_head, "_block", lambda *args: blocks.append(args[0].shape) or block(*args))
    train_split, _ = load_splits(sft_dir)
    trainer = build_trainer(tiny_config(sft_dir, tiny_model, tmp_path / "run", lora=lora), train_split, None)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    model = trainer.model
    fused = model(**batch, fused_lm_head=True)  # what SFTTrainer.compute_loss calls
    plain = model(**batch)  # transformers' cross-entropy over the full logits
    assert torch.allclose(fused.loss, plain.loss, atol=1e-5)
    assert fused.log_probs.shape == batch["labels"][:, 1:].shape
    assert int(fused.label_mask.sum()) == int((batch["labels"][:, 1:] != -100).sum())
    assert sum(shape[0] for shape in blocks) == int(fused.label_mask.sum())  # ours, on the completion positions only


def test_max_length_is_fitted_to_the_longest_example_and_written_in_the_config(sft_dir, tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    train_split, val = load_splits(sft_dir)
    trainer = build_trainer(tiny_config(sft_dir, tiny_model, out, lora=True), train_split, val)
    lengths = [len(ids) for split in (trainer.train_dataset, trainer.eval_dataset) for ids in split["input_ids"]]
    tokenizer = trainer.processing_class
    for row, source in zip(trainer.train_dataset, train_split):  # every answer token is still there, then the end
        start = next(i for i, label in enumerate(row["labels"]) if label != -100)
        assert tokenizer.decode(row["input_ids"][start:]) == source["completion"][0]["content"] + "<|im_end|>\n"
    fitted = trainer.args.max_length
    assert max(lengths) <= fitted < max(lengths) + 64 and fitted % 64 == 0 and fitted < 512
    assert f"longest example {max(lengths)} tokens, max_length {fitted} (limit 512)" in capsys.readouterr().err
    train(tiny_config(sft_dir, tiny_model, out, lora=True))
    written = read_json(out / "train_config.json")
    assert (written["max_length"], written["max_length_limit"]) == (fitted, 512)
    assert (written["longest_example_tokens"], written["examples_at_limit"]) == (max(lengths), 0)


def test_a_limit_below_the_longest_example_is_kept_and_the_cut_examples_are_named(sft_dir, tiny_model, tmp_path,
                                                                                  capsys):
    from transformers import AutoTokenizer

    train_split, val = load_splits(sft_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompts = [len(tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True)["input_ids"])
               for split in (train_split, val) for row in split]
    limit = max(prompts) + 8  # every answer keeps a few tokens, the long ones lose their ends
    trainer = build_trainer(tiny_config(sft_dir, tiny_model, tmp_path / "run", max_length=limit), train_split, val)
    assert trainer.args.max_length == limit
    lengths = [len(ids) for split in (trainer.train_dataset, trainer.eval_dataset) for ids in split["input_ids"]]
    assert len(lengths) == len(prompts) and max(lengths) == limit
    cut = lengths.count(limit)
    assert cut > 0 and f"{cut} examples reach the limit" in capsys.readouterr().err


def test_the_default_memory_settings_still_train_a_lora_student(sft_dir, tiny_model, tmp_path):
    # The defaults chosen for memory: no LoRA dropout, passes of 2 examples on CPU (here 2 per step of 4).
    config = tiny_config(sft_dir, tiny_model, tmp_path / "run", lora=True, max_steps=8, batch_size=4,
                         learning_rate=1e-2)
    assert (config.lora_dropout, config.micro_batch_size, config.gradient_checkpointing) == (0.0, None, False)
    train_split, val = load_splits(sft_dir)
    trainer = build_trainer(config, train_split, val)
    assert (trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps) == (2, 2)
    before, loss_before = trainable(trainer.model), trainer.evaluate()["eval_loss"]
    trainer.train()
    params = dict(trainer.model.named_parameters())
    assert [n for n in before if torch.equal(params[n], before[n])] == []
    loss_after = trainer.evaluate()["eval_loss"]
    print("eval loss", loss_before, loss_after)
    assert loss_after < loss_before - 0.05


def test_micro_batches_change_the_memory_not_the_numbers(sft_dir, tiny_model, tmp_path):
    # Passes of 2 or 1 examples give the losses and the adapter of one pass of 4: same examples per step, same loss.
    train_split, _ = load_splits(sft_dir)
    runs = {}
    for micro in (4, 2, 1):
        config = tiny_config(sft_dir, tiny_model, tmp_path / f"run{micro}", lora=True, max_steps=2, batch_size=4,
                             micro_batch_size=micro)
        trainer = build_trainer(config, train_split, None)
        assert (trainer.args.per_device_train_batch_size, trainer.args.gradient_accumulation_steps) == (micro, 4 // micro)
        trainer.train()
        runs[micro] = [h["loss"] for h in trainer.state.log_history if "loss" in h], trainable(trainer.model)
    for micro in (2, 1):
        assert runs[micro][0] == pytest.approx(runs[4][0], rel=1e-4)
        assert [n for n, p in runs[4][1].items() if not torch.allclose(runs[micro][1][n], p, atol=1e-6)] == []


def test_the_micro_batch_is_two_on_cpu_and_the_whole_batch_on_a_gpu():
    from distill.train import micro_batch

    assert [micro_batch(TrainConfig(data="d", output="o", batch_size=b), cuda=False) for b in (8, 2, 1, 3)] == [2, 2, 1, 1]
    assert micro_batch(TrainConfig(data="d", output="o", batch_size=8), cuda=True) == 8
    assert micro_batch(TrainConfig(data="d", output="o", batch_size=8, micro_batch_size=4), cuda=False) == 4
    with pytest.raises(ConfigError, match="micro_batch_size must divide batch_size 8, got 3"):
        TrainConfig(data="d", output="o", batch_size=8, micro_batch_size=3)


def test_a_limit_that_leaves_no_answer_token_is_refused(sft_dir, tiny_model, tmp_path):
    train_split, val = load_splits(sft_dir)
    with pytest.raises(ConfigError, match="max_length 16 leaves no answer token in any training example"):
        build_trainer(tiny_config(sft_dir, tiny_model, tmp_path / "run", max_length=16), train_split, val)


def test_low_memory_returns_every_block_over_128_kib(monkeypatch):
    """The default keeps blocks under 4 MiB in the heap (fast); --low-memory gives the old 128 KiB (docs/performance.md)."""
    import distill.train as T

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))

    monkeypatch.setattr(T.ctypes, "CDLL", lambda name: FakeLibc())
    monkeypatch.setattr(T.sys, "platform", "linux")
    T.return_freed_memory()
    T.return_freed_memory(low_memory=True)
    assert calls == [(-3, 4 * 1024 * 1024), (-3, 128 * 1024)]
    assert TrainConfig(data="d", output="o", low_memory=True).low_memory
