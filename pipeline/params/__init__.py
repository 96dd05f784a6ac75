"""Parameters: loading, merging and checking params.yaml (load), its typed blocks with every key's
description and bounds (configs), the schema and key comments generated from them (schema), and presets
written into params.yaml for DVC (presets)."""
