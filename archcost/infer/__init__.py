"""Inference: prefill and decode steps traced forward-only against a KV cache (``capture``),
priced by the cost engine and hardware profiles that price training (``price``); static
batching, a continuous-batching simulation (``serving``) and the serving-plan search on top
of the step costs (README "Inference")."""
