"""One router per concern: health probes, the model list and chat."""
