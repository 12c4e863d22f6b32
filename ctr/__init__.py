"""CTR side of the toolkit: prepared datasets -> DeepFM / DIN baselines and MSD's knowledge integration (MKIM)."""
