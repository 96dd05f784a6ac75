# Full reproduction: `snakemake --cores N` (default target: rule all). One rule per stage of the stage
# table, pipeline/drivers/stage_table.py, from which dvc.yaml is generated too; rules run `python -m pipeline <stage>`.
from snakemake.utils import min_version

from pipeline.drivers import snakemake as stages

min_version("9.0")

# params.yaml with the --configfile presets and --config values merged over it (as Snakemake merges them),
# checked (schema, names, data roots: one line per problem, exit 2) and written for the stages to read.
config.update(stages.checked_config(config, presets=workflow.configfiles))


include: "workflow/rules/stages.smk"


rule all:
    input:
        stages.all_targets(config),
    default_target: True
