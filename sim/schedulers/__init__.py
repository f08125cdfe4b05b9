"""Batch schedulers, one per module, behind `Scheduler` (see base.py) and this registry: adding a policy
is one module and one entry here."""
from .base import PREEMPTION_MODES, Scheduler, SchedulerLimits
from .orca import OrcaScheduler
from .sarathi import SarathiScheduler
from .sglang import SglangScheduler
from .static import StaticScheduler
from .trtllm import TrtllmChunkedScheduler, TrtllmScheduler
from .vllm import VllmScheduler
from .vllm_v1 import VllmV1Scheduler

SCHEDULERS = {s.name: s for s in (StaticScheduler, OrcaScheduler, VllmScheduler, SarathiScheduler, VllmV1Scheduler,
                                   SglangScheduler, TrtllmScheduler, TrtllmChunkedScheduler)}

__all__ = ["PREEMPTION_MODES", "SCHEDULERS", "Scheduler", "SchedulerLimits"]
