"""CTR side: prepared datasets (`ctr prepare`), DeepFM / DIN baselines and MSD's knowledge integration (MKIM)."""
