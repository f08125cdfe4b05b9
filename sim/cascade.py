"""Cascade serving: pools of models of increasing size, every request answered first by the smallest and
escalated up the cascade while its answer is judged inadequate (FrugalGPT's LLM cascade, Chen, Zaharia and
Zou 2023, Section 3; AutoMix, Madaan et al. 2023, escalates on a self-verification of the small model's answer).

The story of a request: it arrives at tier 0's router and is answered there. When the answer is complete a
judge decides whether it is adequate; with the tier's `escalate` probability it is not, and the request goes
on to the next tier at that moment, until a tier's answer is kept (the last tier's always is). The judge is
the stated model of difficulty: one probability per tier, drawn per request from a seeded stream before the
run (so escalation is the same whatever the timing); it costs no time (a confidence score or a small
verifier, not modelled). Each tier answers with the request's `output_tokens`. What the next tier reads is
the escalation policy's:

- `Restart`: the original prompt again; the rejected answer's tokens are wasted work.
- `Keep`: the rejected attempt's prompt and answer, as context to revise (each escalation lengthens it).

The user sees only the final answer: its TTFT and E2E are measured from the request's original arrival,
its TPOT is the final tier's, its queueing is the wait before the first tier first scheduled it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import simpy

from infersim.roofline.errors import SpecError, require_choice
from infersim.roofline.step import utilization_peaks

from .cluster import Colocated
from .metrics import Metrics, request_table, stats, summarize
from .request import DONE, Request
from .run import RunConfig, RunResult, check_config, deploy, pool_result, replay_arrivals

_ESCALATION_STREAM = 0xCA5CADE  # keeps the judge's draws apart from the workload's (seed) and the replicas' ([seed, i])

# summarize's figures of one pool's steps: a cascade has them per tier (the tiers' models, GPUs and KV blocks differ)
_POOL_FIGURES = ("kv_utilization_mean", "kv_utilization_peak", "kv_fragmentation_mean", "batch_size_mean",
                "busy_fraction", "model_flops_utilization", "model_bandwidth_utilization")


class Restart:
    """The next tier answers the original prompt afresh; the rejected answer's tokens were wasted."""

    name: ClassVar[str] = "restart"

    @staticmethod
    def next_prompt_tokens(original: Request, rejected: Request) -> int:
        return original.prompt_tokens


class Keep:
    """The next tier reads the rejected attempt, prompt and answer, as context to revise."""

    name: ClassVar[str] = "keep"

    @staticmethod
    def next_prompt_tokens(original: Request, rejected: Request) -> int:
        return rejected.prompt_tokens + rejected.output_tokens


ESCALATIONS = {policy.name: policy for policy in (Restart, Keep)}


@dataclass(frozen=True)
class Tier:
    """One pool of the cascade: `run` deploys it (model, GPU, parallelism, engine; `run.cluster` its
    colocated replicas); `escalate` is the probability that an answer here goes on to the next tier."""

    run: RunConfig
    escalate: float = 0.0


@dataclass(frozen=True)
class CascadeConfig:
    tiers: tuple[Tier, ...]  # smallest model first
    policy: str = "restart"  # a name in ESCALATIONS
    seed: int = 0  # of the judge's draws


@dataclass
class CascadeResult:
    requests: list[Request]  # the final answers, as the user sees them (see the module's docstring)
    summary: dict
    table: dict  # request_table of the final answers, with the tier that gave each
    timeline: dict  # every tier's steps, with the tier that ran each
    tiers: list[RunResult]  # each tier's own: its attempts, steps and summary


def check_cascade(cascade: CascadeConfig) -> None:
    """The cascade's parts fit together and each tier's configuration is sound (a SpecError names the field)."""
    require_choice("cascade.policy", cascade.policy, ESCALATIONS)
    if len(cascade.tiers) < 2:
        raise SpecError("cascade.tiers", "a cascade needs at least 2 tiers, smallest model first", len(cascade.tiers))
    for i, tier in enumerate(cascade.tiers):
        if not 0 <= tier.escalate <= 1:
            raise SpecError(f"cascade.tiers.{i}.escalate", "must be a probability in [0, 1]", tier.escalate)
        if not isinstance(tier.run.cluster, Colocated):
            raise SpecError("cluster.mode", "a cascade's tiers are colocated pools", type(tier.run.cluster).__name__)
        if tier.run.concurrency is not None:
            raise SpecError("workload.arrival.process", "a cascade is driven open loop (requests at their arrival "
                            "times): use poisson, gamma, constant or burst", "concurrency")
        check_config(tier.run)
    last = len(cascade.tiers) - 1
    if cascade.tiers[last].escalate:
        raise SpecError(f"cascade.tiers.{last}.escalate", "the last tier's answers are final; remove escalate",
                        cascade.tiers[last].escalate)


def escalation_draws(cascade: CascadeConfig, count: int) -> np.ndarray:
    """(count, tiers) booleans: whether request i's answer at tier k is judged inadequate, each with the
    tier's probability, independently (the last tier's never)."""
    probabilities = np.array([tier.escalate for tier in cascade.tiers])
    rng = np.random.default_rng([cascade.seed, _ESCALATION_STREAM])
    return rng.random((count, len(cascade.tiers))) < probabilities


def simulate_cascade(cascade: CascadeConfig, requests: list[Request], progress=None) -> CascadeResult:
    """Run every request through the cascade, open loop (each reaches tier 0 at its `arrival_s`);
    `progress(fraction of arrivals, simulated seconds)` is called as simulated time passes. The requests
    given are tier 0's attempts; each escalation is a new Request, sent to the next tier when the answer
    it replaces is complete."""
    check_cascade(cascade)
    env = simpy.Environment()
    policy = ESCALATIONS[cascade.policy]
    escalates = escalation_draws(cascade, len(requests))
    origin = {req: i for i, req in enumerate(requests)}  # attempt -> index of the request it answers
    latest = list(requests)  # each request's latest attempt
    attempts: list[list[Request]] = [list(requests)] + [[] for _ in cascade.tiers[1:]]
    metrics = [Metrics() for _ in cascade.tiers]
    pools = []

    def answered_at(tier: int):
        def on_done(attempt: Request) -> None:
            i = origin[attempt]
            if attempt.state != DONE or not escalates[i, tier]:
                return
            original = requests[i]
            prompt_tokens = policy.next_prompt_tokens(original, attempt)
            escalated = Request(id=original.id, arrival_s=env.now, prompt_tokens=prompt_tokens,
                                output_tokens=original.output_tokens, num_seqs=original.num_seqs,
                                priority=original.priority, prefix_id=original.prefix_id,
                                prefix_tokens=original.prefix_tokens)
            origin[escalated], latest[i] = i, escalated
            attempts[tier + 1].append(escalated)
            pools[tier + 1].deployment.entry.pick().submit(escalated)
        return on_done

    for k, tier in enumerate(cascade.tiers):
        pools.append(deploy(tier.run, env, metrics[k], requests if k == 0 else None, answered_at(k)))
    replay_arrivals(env, requests, pools[0].deployment.entry, progress)
    tiers = [pool_result(tier.run, attempts[k], metrics[k], pools[k]) for k, tier in enumerate(cascade.tiers)]
    tier_of = {attempt: k for k, tier_attempts in enumerate(attempts) for attempt in tier_attempts}
    preemptions = np.zeros(len(requests), dtype=np.int64)
    for attempt, i in origin.items():
        preemptions[i] += attempt.preemptions
    final = [replace(answer, arrival_s=first.arrival_s, prompt_tokens=first.prompt_tokens,
                     first_scheduled_s=first.first_scheduled_s, preemptions=int(count))
             for first, answer, count in zip(requests, latest, preemptions)]
    table = request_table(final, cascade.tiers[0].run.overhead.frontend_s)  # a request meets the front end once
    table["tier"] = np.array([tier_of[answer] for answer in latest], dtype=np.int64)
    summary = _summary(cascade, table, tiers)
    return CascadeResult(final, summary, table, _timeline(tiers), tiers)


def _summary(cascade: CascadeConfig, table: dict, tiers: list[RunResult]) -> dict:
    """summarize's request figures over the final answers (an empty pool stands in for the steps); of the
    steps' figures, the counts summed over the tiers, ITL over every token of every tier (the rejected
    answers' too: gaps are kept per step, not per request), and the utilizations only per tier (under
    `tiers`, over the tier's own span: its first arrival to its last completion). Cost: each tier's GPUs
    held for the whole run (GPU-seconds: GPUs x simulated time), summed."""
    last = cascade.tiers[-1].run
    empty = Metrics()
    summary = summarize(table, empty.timeline(), empty, kv_blocks_per_replica=1, block_size_tokens=1, replicas=1,
                        slo=last.slo, peaks=utilization_peaks(last.hardware, last.options))
    gaps = [result.metrics.itl_gaps() for result in tiers]
    summary["itl_s"] = stats(np.concatenate([values for values, _ in gaps]),
                             np.concatenate([weights for _, weights in gaps]))
    summary |= {key: None for key in _POOL_FIGURES}
    for key in ("preemptions", "kv_blocks_swapped", "steps"):
        summary[key] = sum(result.summary[key] for result in tiers)
    run_s = summary["simulated_time_s"]
    summary["policy"] = cascade.policy
    escalated = [len(result.requests) for result in tiers[1:]] + [0]  # each escalation is an attempt one tier up
    final = np.bincount(table["tier"], minlength=len(tiers))
    summary["tiers"] = [_tier_figures(tier, result, run_s, escalated[k], int(final[k]))
                        for k, (tier, result) in enumerate(zip(cascade.tiers, tiers))]
    summary["gpus"] = sum(tier["gpus"] for tier in summary["tiers"])
    summary["gpu_seconds"] = sum(tier["gpu_seconds"] for tier in summary["tiers"])
    summary["kv_blocks_per_replica"] = None  # per tier
    return summary


def _tier_figures(tier: Tier, result: RunResult, run_s: float, escalated: int, final: int) -> dict:
    """What one tier served (`escalated` of its attempts went on; `final` requests ended here: answered,
    refused or unfinished) and what it cost over the whole run (`busy_fraction` too, where its summary's is
    over its own span)."""
    t = result.table
    replicas, gpus = len(result.replicas), result.summary["gpus"]
    busy_s = float(np.sum(result.timeline["duration_s"]))
    done = t["state"] == DONE
    return {"model": tier.run.model.name, "hardware": tier.run.hardware.name, "replicas": replicas, "gpus": gpus,
            "escalate": tier.escalate, "requests_served": len(result.requests), "requests_escalated": escalated,
            "requests_final": final, "prompt_tokens": int(np.sum(t["prompt_tokens"])),
            "output_tokens": int(np.sum(t["output_tokens"][done] * t["num_seqs"][done])),
            "busy_s": busy_s, "busy_fraction": busy_s / (replicas * run_s) if run_s else 0.0,
            "gpu_seconds": gpus * run_s, "kv_blocks_per_replica": result.total_blocks, "summary": result.summary}


def _timeline(tiers: list[RunResult]) -> dict:
    """Every tier's steps in one timeline, ordered by start time (then tier, then replica)."""
    columns = list(tiers[0].timeline)
    out = {c: np.concatenate([result.timeline[c] for result in tiers]) for c in columns}
    out["tier"] = np.concatenate([np.full(len(result.timeline["start_s"]), k, dtype=np.int64)
                                  for k, result in enumerate(tiers)])
    order = np.lexsort((out["replica"], out["tier"], out["start_s"]))
    return {c: v[order] for c, v in out.items()}
