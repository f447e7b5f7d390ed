"""The memory plan as people read it: one markdown table of stages (the CLI, base_model's metadata, the README) and
each stage's parts below it."""

from __future__ import annotations

from vlm_rl_assets.planning.plan import MemoryPlan, gib
from vlm_rl_assets.readable import quantity


def plan_table(plan: MemoryPlan) -> str:
    """| stage | runs in | peak | usable | fits |, one row per stage."""
    rows = ["| stage | runs in | peak | usable | fits |", "|---|---|---|---|---|"]
    for s in plan.stages:
        rows.append(f"| {s.name} | {s.runs} | {gib(s.peak)} {s.per} | {gib(s.usable)} | {'yes' if s.fits else 'NO'} |")
    return "\n".join(rows)


def plan_text(plan: MemoryPlan) -> str:
    """The whole plan: the model and machines, the table, each stage's parts, and for a stage that does not fit the
    changes that would make it."""
    r = plan.request
    shape = r.shape
    head = (
        f"Memory plan: {shape.name} ({quantity(shape.parameters)} parameters, {shape.dtype}, counted from its "
        f"{shape.counted_from}; {shape.image_tokens} image tokens {shape.images.rule}) on "
        f"{r.budget.describe()}"
    )
    lines = [head, "", plan_table(plan), ""]
    for s in plan.stages:
        lines.append(f"{s.name} ({gib(s.peak)} {s.per}):")
        lines += [f"  {p.name:<28} {gib(p.bytes):>10}  {p.note}" for p in s.parts if p.bytes and not p.phase]
        for moment in dict.fromkeys(p.phase for p in s.parts if p.phase):
            lines.append(f"  when {moment}:")
            lines += [f"    {p.name:<26} {gib(p.bytes):>10}  {p.note}" for p in s.parts if p.phase == moment]
    lines.append("")
    lines.append("Every stage fits." if plan.fits else plan.refusal())
    return "\n".join(lines)
