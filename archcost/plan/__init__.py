"""Parallel plans: the plan space, pipeline schedules, search."""
