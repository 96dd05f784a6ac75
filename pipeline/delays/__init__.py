"""Paper B: learning synaptic delays with DCLS (stages, training, table, plots)."""
