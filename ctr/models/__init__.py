"""CTR models: shared layers, DeepFM and DIN; every forward returns logits."""
