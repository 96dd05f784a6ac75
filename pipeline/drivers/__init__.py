"""How stages are declared and run: the stage table and its vocabulary, a job's config (resolve), the
checks before a run (preflight) and the config a job would get (show), the CLI every driver calls, the
code dependencies of each stage, the Snakemake rules and dvc.yaml."""
