"""Inference: prefill and decode steps traced forward-only against a KV cache, priced by the
cost engine and hardware profiles that price training (README "Inference")."""
