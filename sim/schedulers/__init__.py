"""Batch schedulers, one per module, behind `Scheduler` (see base.py) and this registry: adding a policy
is one module and one entry here."""
from .base import PREEMPTION_MODES, Scheduler, SchedulerLimits
from .orca import OrcaScheduler
from .sarathi import SarathiScheduler
from .static import StaticScheduler
from .vllm import VllmScheduler

SCHEDULERS = {s.name: s for s in (StaticScheduler, OrcaScheduler, VllmScheduler, SarathiScheduler)}

__all__ = ["PREEMPTION_MODES", "SCHEDULERS", "Scheduler", "SchedulerLimits"]
