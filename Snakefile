# Full reproduction: `snakemake --cores N` (default target: rule all).
# Every rule runs one `python -m pipeline <stage>` command; dvc.yaml runs the
# same commands with the same inputs and outputs (tests/test_dag_equality.py).
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


validate(config, "workflow/schemas/params.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/delays.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        REPORT_OUTPUTS,
        prepared_data(),
    default_target: True
