"""Parallel plans: the plan space (``space``), pipeline schedules simulated op by op
(``schedule``); search builds on both."""

from archcost.plan.schedule import ScheduleResult, chrome_trace, simulate
from archcost.plan.space import (
    PLAN_DTYPE,
    ModelShape,
    Offload,
    Plan,
    Recompute,
    Schedule,
    ZeroStage,
    check,
    enumerate_plans,
    parse_plan,
    plan_from_row,
    plans_to_array,
    validate,
)

__all__ = [
    "PLAN_DTYPE", "ModelShape", "Offload", "Plan", "Recompute", "Schedule", "ScheduleResult",
    "ZeroStage", "check", "chrome_trace", "enumerate_plans", "parse_plan", "plan_from_row",
    "plans_to_array", "simulate", "validate",
]
