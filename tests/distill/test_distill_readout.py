"""`distill embed --layer --pooling` (issue 25: the student's layer and pooling chosen on validation): each
readout is the hidden state it names, recorded in embed_config.json, and served the same way by `ctr serve`."""

import json

import numpy as np
import pytest
import torch

from distill.embed import EmbedConfig, embed_tables
from distill.encode import encode_texts, load_encoder
from ground.errors import ConfigError
from ground.vectors import read_table

TEXTS = ["Toy Story (1995). Genres: Animation", "Heat (1995). Genres: Action, Crime, Thriller", "Up"]


@pytest.fixture(scope="module")
def body(tiny_student):
    return load_encoder(str(tiny_student))


def test_layers_and_poolings_read_the_hidden_states_they_name(body):
    model, tokenizer = body
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = model(**enc, output_hidden_states=True)
    mask = enc["attention_mask"].unsqueeze(-1).float()
    last_token = enc["attention_mask"].sum(1) - 1
    for layer, hidden in ((-1, states.last_hidden_state), (2, states.last_hidden_state), (0, states.hidden_states[0]),
                          (1, states.hidden_states[1])):
        mean = encode_texts(model, tokenizer, TEXTS, 2, 64, "", progress=False, layer=layer)
        np.testing.assert_allclose(mean, ((hidden * mask).sum(1) / mask.sum(1)).numpy(), atol=1e-5)
        last = encode_texts(model, tokenizer, TEXTS, 2, 64, "", progress=False, layer=layer, pooling="last")
        np.testing.assert_allclose(last, hidden[torch.arange(3), last_token].numpy(), atol=1e-5)
    assert not np.allclose(encode_texts(model, tokenizer, TEXTS, 3, 64, "", progress=False, layer=0),
                           encode_texts(model, tokenizer, TEXTS, 3, 64, "", progress=False), atol=1e-3)
    with pytest.raises(ConfigError, match=r"layer must be -1 \(the last hidden state\) or 0..2, got 3"):
        encode_texts(model, tokenizer, TEXTS, 2, 64, "", progress=False, layer=3)


def test_embed_records_the_readout_and_refuses_it_for_a_sentence_encoder(tiny_student, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"item_id": f"i{n}", "name": t}) + "\n" for n, t in enumerate(TEXTS)))
    summary = embed_tables(EmbedConfig(model=str(tiny_student), items=items, output=tmp_path / "e", layer=1,
                                       pooling="last", max_length=64))
    assert (summary["layer"], summary["pooling"], summary["encoder_kind"]) == (1, "last", "student")
    saved = json.loads((tmp_path / "e" / "embed_config.json").read_text())
    assert (saved["layer"], saved["pooling"]) == (1, "last")
    model, tokenizer = load_encoder(str(tiny_student))
    expected = encode_texts(model, tokenizer, TEXTS, 16, 64, "", progress=False, layer=1, pooling="last")
    np.testing.assert_allclose(read_table(tmp_path / "e" / "item_embeddings.parquet")[1], expected, atol=1e-6)

    from ctr.encoders import table_encoder

    encoder, _ = table_encoder(tmp_path / "e", None, 8)  # serving reads the student the same way
    assert (encoder.layer, encoder.pooling) == (1, "last")
    np.testing.assert_allclose(encoder(TEXTS), expected, atol=1e-5)
    from ctr.encoders import student_version

    assert encoder.version != student_version(str(tiny_student), 64)  # another readout: other cache keys
    with pytest.raises(ConfigError, match="--layer and --pooling choose how the student is read"):
        EmbedConfig(items=items, output=tmp_path / "x", encoder="all-minilm-l6-v2", layer=0)
    with pytest.raises(ConfigError, match="pooling must be one of mean, last"):
        EmbedConfig(model=str(tiny_student), items=items, output=tmp_path / "x", pooling="max")
