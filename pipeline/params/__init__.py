"""Parameters: loading and checking params.yaml (load), typed views of its blocks (configs), a job's config
(resolve), checks before a run (preflight) and presets written into params.yaml for DVC (presets)."""
