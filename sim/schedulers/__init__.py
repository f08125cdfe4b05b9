"""Batch schedulers, one per module, behind `Scheduler` (see base.py) and this registry."""
from .base import PREEMPTION_MODES, Scheduler, SchedulerLimits
from .orca import OrcaScheduler
from .sarathi import SarathiScheduler
from .static import StaticScheduler
from .vllm import VllmScheduler

SCHEDULERS = {s.name: s for s in (StaticScheduler, OrcaScheduler, VllmScheduler, SarathiScheduler)}
# `disaggregated` runs the vllm scheduler on separate prefill and decode replicas (see sim.cluster)
SCHEDULER_NAMES = tuple(SCHEDULERS) + ("disaggregated",)

__all__ = ["PREEMPTION_MODES", "SCHEDULERS", "SCHEDULER_NAMES", "Scheduler", "SchedulerLimits"]
