"""How stages are declared and run: the stage table and its vocabulary, the CLI every driver calls, the
code dependencies of each stage, the Snakemake rules and dvc.yaml."""
