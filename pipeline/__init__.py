"""SNN reproduction pipeline: `python -m pipeline <stage>` runs one stage (see pipeline/drivers/cli.py)."""
