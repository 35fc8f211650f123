"""gpu-agent: the single authority on which models are resident on one host's GPUs."""
