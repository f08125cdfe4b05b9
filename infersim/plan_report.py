"""The capacity-planning report: what `infersim plan` found (its plan.json, as a dict) written as report.md
and a self-contained report.html (inline CSS, plots embedded as PNG data URIs, nothing fetched), with the
plots as PNG files beside them. Every number shown is read from the plan; a figure the plan lacks (an
infeasible candidate has no rate and no cost) is shown as "-"."""
from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from infersim.plan_plots import duration_text, slo_bounds_s, write_plots
from infersim.report import counted

LATENCY_NAMES = {"ttft_s": "TTFT", "tpot_s": "TPOT", "itl_s": "ITL", "e2e_s": "E2E"}
# What each figure shows, in the order the report shows them; {focus} is "chosen" or "closest".
CAPTIONS = {
    "latency_vs_load": "Latency vs offered load per replica: p50 (dashed) and p99 (solid) TTFT and TPOT per "
                       "candidate, with the SLO's bounds (dotted black) and each candidate's maximum sustainable "
                       "rate (dotted, its colour).",
    "frontier": "Throughput vs interactivity: output tokens/s per GPU against tokens/s per user over a concurrency "
                "sweep; filled points meet the SLOs, the dotted line is the least interactivity the TPOT bound "
                "allows.",
    "cost": "Cost per million output tokens at the target rate; green meets the SLOs, red does not.",
    "operating_point": "KV-cache use and batch size over time for the {focus} configuration at its operating point.",
    "roofline": "The {focus} configuration's prefill and decode ops on its hardware's roofline.",
}


def sig3(value: float) -> str:
    """Three significant digits without an exponent, thousands separated: 0.34806 -> '0.348', 9.6 -> '9.60',
    1234.5 -> '1,234' (a number of four or more digits keeps them all)."""
    if value == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def dollars(value: float) -> str:
    """12.53 -> '$12.53'."""
    return f"${value:,.2f}"


def dollars_sig3(value: float) -> str:
    """0.34806 -> '$0.348'."""
    return f"${sig3(value)}"


def percent(fraction: float) -> str:
    """0.46 -> '46.0%'."""
    return f"{sig3(100 * fraction)}%"


def _shown(value, text: Callable[[float], str]) -> str:
    """`text(value)`, or "-" where the plan has no value (None, NaN, inf)."""
    return text(value) if value is not None and math.isfinite(value) else "-"


def _counted(count, noun: str) -> str:
    """'1 GPU', '3 GPUs', or '- GPUs' where the plan has no count."""
    return f"- {noun}s" if count is None else counted(count, noun)


def rate_range_text(rate: dict | None) -> str:
    """The maximum sustainable rate with its uncertainty: '6.20 (5.90–6.60)'."""
    if not rate or rate.get("value") is None:
        return "-"
    return f"{sig3(rate['value'])} ({_shown(rate.get('low'), sig3)}–{_shown(rate.get('high'), sig3)})"


def meets_text(candidate: dict) -> str:
    """'yes' or 'no' for a candidate that ran; its status ('infeasible', 'error') for one that did not."""
    if candidate["status"] != "ok":
        return candidate["status"]
    return "yes" if candidate.get("meets_slo") else "no"


@dataclass(frozen=True)
class Column:
    """A column of a table of candidates: the candidate's key in plan.json (carried in the HTML as data-field, its
    value as JSON in data-value), its heading and its text."""

    field: str
    heading: str
    text: Callable[[dict], str]
    numeric: bool = True


def _field(field: str, text: Callable[[float], str]) -> Callable[[dict], str]:
    return lambda candidate: _shown(candidate.get(field), text)


RANKING = (
    Column("rank", "rank", _field("rank", str)),
    Column("name", "candidate", lambda c: c["name"], numeric=False),
    Column("gpus", "GPUs", _field("gpus", str)),
    Column("replicas", "replicas", _field("replicas", str)),
    Column("max_rate_per_replica", "max rate per replica (req/s)",
           lambda c: rate_range_text(c.get("max_rate_per_replica"))),
    Column("ceiling_rate_per_replica", "roofline ceiling (req/s)", _field("ceiling_rate_per_replica", sig3)),
    Column("cost_per_hour", "$/h", _field("cost_per_hour", dollars)),
    Column("cost_per_million_output_tokens", "$/M output tokens",
           _field("cost_per_million_output_tokens", dollars_sig3)),
    Column("energy_j_per_output_token", "J/output token", _field("energy_j_per_output_token", sig3)),
    Column("memory_headroom_fraction", "memory headroom", _field("memory_headroom_fraction", percent)),
    Column("meets_slo", "meets SLOs", meets_text, numeric=False),
    Column("reason", "why it loses", lambda c: c.get("reason") or "-", numeric=False),
)
CHOSEN_REASON = "chosen: the cheapest that meets the SLOs"
CONFIGURATION = (
    Column("name", "candidate", lambda c: c["name"], numeric=False),
    Column("model", "model", lambda c: c.get("model") or "-", numeric=False),
    Column("hardware", "hardware", lambda c: c.get("hardware") or "-", numeric=False),
    Column("tensor_parallel", "TP", _field("tensor_parallel", str)),
    Column("pipeline_parallel", "PP", _field("pipeline_parallel", str)),
    Column("quantization", "quantization", lambda c: c.get("quantization") or "-", numeric=False),
    Column("engine", "engine", lambda c: c.get("engine") or "-", numeric=False),
    Column("mode", "mode", lambda c: c.get("mode") or "-", numeric=False),
    Column("gpus_per_replica", "GPUs per replica", _field("gpus_per_replica", str)),
    Column("price_per_gpu_hour", "$/GPU-hour", _field("price_per_gpu_hour", dollars)),
    Column("power_w", "power (W)", _field("power_w", lambda v: f"{v:,.0f}")),
    Column("bound", "bound by", lambda c: c.get("bound") or "-", numeric=False),
)


def ranked(candidates: list[dict]) -> list[dict]:
    """Ranked candidates by rank, then those without a rank (failed the SLOs, could not run) in plan order."""
    with_rank = sorted((c for c in candidates if c.get("rank") is not None), key=lambda c: c["rank"])
    return with_rank + [c for c in candidates if c.get("rank") is None]


def candidate_named(plan: dict, key: str) -> dict | None:
    """The candidate that plan[key] ("chosen", "closest") names, None where it names none."""
    name = plan.get(key)
    if name is None:
        return None
    for candidate in plan["candidates"]:
        if candidate["name"] == name:
            return candidate
    raise ValueError(f"plan.json: {key} is {name!r}, which is not a candidate; candidates are "
                     + ", ".join(repr(c["name"]) for c in plan["candidates"]))


def focus(plan: dict) -> tuple[dict | None, str]:
    """The configuration the report looks into (operating point, roofline): the chosen one, else the closest;
    and which of the two it is."""
    chosen = candidate_named(plan, "chosen")
    return (chosen, "chosen") if chosen is not None else (candidate_named(plan, "closest"), "closest")


def verdict(plan: dict) -> str:
    """One line: the cheapest candidate meeting the SLOs with its cost and GPUs, or that none does and the
    closest, with the plan's reason."""
    chosen = candidate_named(plan, "chosen")
    if chosen is not None:
        def shown(key, text=str):
            return _shown(chosen.get(key), text)
        return (f"Cheapest meeting the SLOs: {chosen['name']} at {shown('cost_per_hour', dollars)}/h, "
                f"{_counted(chosen.get('gpus'), 'GPU')} ({_counted(chosen.get('replicas'), 'replica')} of "
                f"{shown('gpus_per_replica')} × "
                f"{chosen.get('hardware', '-')}), {shown('cost_per_million_output_tokens', dollars_sig3)} per million "
                "output tokens.")
    closest = candidate_named(plan, "closest")
    if closest is not None:
        return (f"No candidate meets the SLOs; closest: {closest['name']}, because "
                f"{closest.get('reason') or 'the plan gives no reason'}.")
    return "No candidate meets the SLOs, and none comes close: " + "; ".join(
        f"{c['name']}: {c.get('reason') or c['status']}" for c in plan["candidates"]) + "."


def slo_lines(slo: dict) -> list[str]:
    """The SLOs as teams write them: 'p99 TTFT <= 2 s', 'goodput: at least 95% of requests within the bounds'."""
    lines = []
    for key, value in slo.items():
        if key in LATENCY_NAMES:
            lines += [f"{q} {LATENCY_NAMES[key]} ≤ {duration_text(bound_s)}"
                      for q, bound_s in slo_bounds_s(slo, key).items()]
        elif key == "goodput_fraction":
            lines.append(f"goodput: at least {100 * value:g}% of requests within the latency bounds")
        else:
            lines.append(f"{key}: {value}")
    return lines


def facts(plan: dict) -> list[str]:
    """The plan's inputs, a line each: target rate, SLOs, workload."""
    workload = plan.get("workload") or {}
    longer = (f", or as many as arrive in {workload['min_duration_s']:g} s (at most {workload['max_requests']:,})"
              if workload.get("min_duration_s") else "")
    return [f"target rate: {plan['target_rate_per_s']:g} requests/s",
            "SLOs: " + ("; ".join(slo_lines(plan["slo"])) or "none"),
            f"workload: {workload.get('description', '-')}, "
            f"{_shown(workload.get('num_requests'), lambda v: f'{v:,}')} requests per simulation{longer}"]


def rate_note(plan: dict) -> str:
    """What the bracketed range of the rate column is."""
    seeds = {len((c.get("max_rate_per_replica") or {}).get("per_seed") or []) for c in plan["candidates"]} - {0}
    over = f" over {'/'.join(str(n) for n in sorted(seeds))} seeds" if seeds else ""
    return (f"Max rate per replica: the highest offered load that meets the SLOs, with its uncertainty{over} "
            "in brackets (low–high); the roofline ceiling is the steady-state bound beside it.")


def cell_text(column: Column, candidate: dict, chosen: str | None) -> str:
    """What a table shows in `column` for `candidate`; the chosen one's "why it loses" says it was chosen."""
    if column.field == "reason" and candidate["name"] == chosen:
        return CHOSEN_REASON
    return column.text(candidate)


def _md_table(columns: tuple[Column, ...], candidates: list[dict], chosen: str | None) -> list[str]:
    def line(cells):
        return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"
    return [line([c.heading for c in columns]),
            "|" + "|".join("--:" if c.numeric else "---" for c in columns) + "|",
            *(line([cell_text(col, c, chosen) for col in columns]) for c in candidates)]


def render_markdown(plan: dict, plots: dict[str, Path]) -> str:
    """report.md: the verdict, the plan's inputs, the ranking and configuration tables and the plots (linked
    by file name, beside the report)."""
    _, which = focus(plan)
    lines = [f"# Capacity plan: {plan['name']}", "", f"**{verdict(plan)}**", "",
             *(f"- {fact}" for fact in facts(plan)), "", "## Ranking", "", rate_note(plan), "",
             *_md_table(RANKING, ranked(plan["candidates"]), plan.get("chosen")), "", "## Configurations", "",
             *_md_table(CONFIGURATION, plan["candidates"], plan.get("chosen")), ""]
    if plots:
        lines += ["## Plots", ""]
        for name, path in plots.items():
            caption = CAPTIONS[name].format(focus=which)
            lines += [f"![{name}]({path.name})", "", f"*{caption}*", ""]
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1300px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.verdict { font-size: 1.1em; font-weight: 600; padding: 0.6em 0.9em; border-radius: 4px; }
.verdict.feasible { background: #e6f4ea; border-left: 5px solid #1e8e3e; }
.verdict.infeasible { background: #fce8e6; border-left: 5px solid #d93025; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.55em; vertical-align: top; }
th { background: #f1f3f4; } td.num { text-align: right; } td.num, td[data-field="name"] { white-space: nowrap; }
tr.chosen td { background: #e6f4ea; font-weight: 600; }
tr.not-ok td { color: #777; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.note { font-size: 0.85em; color: #555; }
"""
# Counts the images that loaded (naturalWidth > 0) into <body data-images-loaded>, so that a headless
# browser's dumped DOM tells whether every plot rendered.
IMAGE_CHECK = """
window.addEventListener("load", function () {
  var loaded = Array.prototype.filter.call(document.images, function (img) {
    return img.complete && img.naturalWidth > 0;
  });
  document.body.setAttribute("data-images-loaded", String(loaded.length));
});
"""


def _html_table(table_id: str, columns: tuple[Column, ...], candidates: list[dict], chosen: str | None) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c.heading)}</th>" for c in columns)
    rows = []
    for cand in candidates:
        classes = ["chosen"] * (cand["name"] == chosen) + ["not-ok"] * (cand["status"] != "ok")
        cells = "".join(f'<td data-field="{esc(col.field)}" data-value="{esc(json.dumps(cand.get(col.field)))}" '
                        f'class="{"num" if col.numeric else "text"}">{esc(cell_text(col, cand, chosen))}</td>'
                        for col in columns)
        rows.append(f'<tr data-candidate="{esc(cand["name"])}" class="{" ".join(classes)}">{cells}</tr>')
    return (f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(rows)
            + "\n</tbody></table>")


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(plan: dict, plots: dict[str, Path]) -> str:
    """report.html: what report.md holds, self-contained (inline CSS, plots as data URIs, no external
    resource), the ranking as <table id="ranking"> whose rows carry data-candidate and whose cells carry the
    plan's field (data-field) and value as JSON (data-value)."""
    esc = html.escape
    _, which = focus(plan)
    figures = "".join(f'<figure><img src="{_data_uri(path)}" alt="{esc(name)}" data-plot="{esc(name)}">'
                      f"<figcaption>{esc(CAPTIONS[name].format(focus=which))}</figcaption></figure>\n"
                      for name, path in plots.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Capacity plan: {esc(plan['name'])}</title>
<style>{STYLE}</style></head>
<body data-images-total="{len(plots)}">
<h1>Capacity plan: {esc(plan['name'])}</h1>
<p class="verdict {'feasible' if plan.get('chosen') is not None else 'infeasible'}">{esc(verdict(plan))}</p>
<ul>{''.join(f'<li>{esc(fact)}</li>' for fact in facts(plan))}</ul>
<h2>Ranking</h2>
<p class="note">{esc(rate_note(plan))}</p>
{_html_table("ranking", RANKING, ranked(plan["candidates"]), plan.get("chosen"))}
<h2>Configurations</h2>
{_html_table("configurations", CONFIGURATION, plan["candidates"], plan.get("chosen"))}
{'<h2>Plots</h2>' if plots else ''}
{figures}<script>{IMAGE_CHECK}</script>
</body></html>
"""


def write_reports(plan: dict, out_dir: Path) -> dict[str, Path]:
    """report.md, report.html and every plot the plan has data for (PNG) under out_dir; returns the paths by
    name: "html", "md" and each plot's ("latency_vs_load", "frontier", "cost", "operating_point",
    "roofline")."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(plan, focus(plan)[0], out)
    paths = {"md": out / "report.md", "html": out / "report.html"}
    paths["md"].write_text(render_markdown(plan, plots), encoding="utf-8")
    paths["html"].write_text(render_html(plan, plots), encoding="utf-8")
    return {**paths, **plots}
