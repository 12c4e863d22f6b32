"""The chain teacher -> SFT data -> student -> F1 -> vectors -> CTR as library calls (the top of the layer order).

`pipeline.steps`: one function a step, each resumable from its outputs; `pipeline.demo`: the main job
(`make demo`); `pipeline.study`: the F1-vs-AUC study. The scripts under scripts/ only parse flags and call these.
"""
