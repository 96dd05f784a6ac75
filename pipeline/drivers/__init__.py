"""The two workflow drivers, both generated from pipeline/stage_table.py: dvc.yaml and the Snakemake rules."""
