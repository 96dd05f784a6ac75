"""Paper A: ANN pretraining as a bridge to SNNs (pipeS: static->static, pipeD: static->events)."""
