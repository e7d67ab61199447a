"""Parallel plans: what a plan is (``space``), which plans are valid (``rules``), all valid plans
as one array (``arrays``), pipeline schedules simulated op by op (``schedule``); the cost of a
plan and the search build on these."""

from archcost.plan.arrays import PLAN_DTYPE, enumerate_plans, plan_from_row, plans_to_array
from archcost.plan.rules import check, validate
from archcost.plan.schedule import ScheduleResult, chrome_trace, simulate
from archcost.plan.space import (
    Axis,
    ModelShape,
    Offload,
    Plan,
    Recompute,
    Schedule,
    ZeroStage,
    parse_plan,
)

__all__ = [
    "PLAN_DTYPE", "Axis", "ModelShape", "Offload", "Plan", "Recompute", "Schedule",
    "ScheduleResult", "ZeroStage", "check", "chrome_trace", "enumerate_plans", "parse_plan",
    "plan_from_row", "plans_to_array", "simulate", "validate",
]
