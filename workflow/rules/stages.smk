# One rule per stage of pipeline/drivers/stage_table.py: inputs (code dependencies included), outputs, the
# values of the parameter keys the stage reads (so a changed value reruns exactly its jobs), log, command.


def define(st):
    # Rules are defined inside a function so that each one keeps its own `spec` (in a plain loop, every
    # rule's command would be evaluated with the loop variable's last value when the job runs).
    spec = stages.rule_spec(st, config, directory, report, workflow.cores)

    rule:
        name:
            st.name
        input:
            **spec.input,
        output:
            **spec.output,
        params:
            **spec.params,
        threads: spec.threads
        resources:
            **spec.resources,
        wildcard_constraints:
            **spec.wildcard_constraints,
        log:
            spec.log,
        shell:
            spec.shell


for st in stages.snakemake_stages():
    define(st)
