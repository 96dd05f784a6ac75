# Benchmark tables and plots from every run's metrics. The report stage reads
# exactly the runs params.yaml asks for (so stale runs never leak in).

REPORT_OUTPUTS = [
    "results/tables/delays.md",
    "results/tables/delays.csv",
    "results/tables/pretrain.md",
    "results/tables/pretrain.csv",
    "results/plots/delays_training.png",
    "results/plots/delays_distribution.png",
    "results/plots/pretrain_time_accuracy.png",
    "results/metrics.json",
]


rule report:
    output:
        delays_md=report("results/tables/delays.md", caption="../report/delays.rst", category="Tables"),
        delays_csv="results/tables/delays.csv",
        pretrain_md=report("results/tables/pretrain.md", caption="../report/pretrain.rst", category="Tables"),
        pretrain_csv="results/tables/pretrain.csv",
        delays_training=report("results/plots/delays_training.png", caption="../report/delays_training.rst", category="Plots"),
        delays_distribution=report("results/plots/delays_distribution.png", caption="../report/delays_distribution.rst", category="Plots"),
        pretrain_time=report("results/plots/pretrain_time_accuracy.png", caption="../report/pretrain_time_accuracy.rst", category="Plots"),
        metrics="results/metrics.json",
    input:
        delays_eval=delays_eval_files(),
        delays_live=delays_live_dirs(),
        pretrain_live=pretrain_live_dirs(),
        transfer=expand("results/pretrain/transfer/{pipe}.json", pipe=pretrain_pipelines()),
        code=code(*REPORT_CODE),
    params:
        delays_runs=[DELAYS.get("datasets"), DELAYS.get("variants"), DELAYS.get("seeds")],
        pretrain_runs=[PRETRAIN.get("pipelines"), PRETRAIN.get("ann_datasets"), PRETRAIN.get("scratch_datasets")],
    log:
        "logs/report.log",
    shell:
        "python -m pipeline report --tables results/tables --plots results/plots --metrics {output.metrics} 2> {log}"
