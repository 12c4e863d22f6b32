"""Prompt templates, the curated reference pool and the substitution dictionary (data, shipped in the wheel)."""

from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent
