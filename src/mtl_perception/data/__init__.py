"""Datasets and the synthetic renderer.

synthetic (render_frame, render_sequence) on top of scene (random rooms), raycast (the renderer), geometry
(camera and primitives), furniture and clutter (composite shapes), materials, textures and decor (surfaces),
lighting (lights, shadows, occlusion) and sensor (camera effects on the colour image); folder (the on-disk format, docs/data_format.md);
nyuv2 (the labelled NYU Depth V2 .mat); transforms (records to training/evaluation samples);
datasets (build_datasets, dataset_info). The `mtl-perception synth` command is mtl_perception/cli/data.py.
"""
