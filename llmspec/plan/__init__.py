"""Planning: memory and speed of parallel layouts, and the choice among them.

`make_plan(spec, pins=...)` (in `plan.planner`) is the entry point; it returns a
`Plan` whose `to_dict()` is contract 2. The modules, leaves first: `flops`,
`devices` (the device graph), `memory`, `cost`, `partition` (pipeline stages),
`search`, `plan` (the result and its explanations), `planner`.
"""

from llmspec.plan.planner import make_plan

__all__ = ["make_plan"]
