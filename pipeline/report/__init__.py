"""Report stage: tables, plots and the metrics summary across both papers."""
