"""Inference: prefill and decode steps priced by the cost engine, and serving on top of them."""
