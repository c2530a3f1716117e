"""Rules the spec checks, the planner's search, `--layout` pins and the code generator share.

Each rule is stated once here as a pure function of plain numbers that returns
`None` when the rule holds and otherwise the reason it does not, in words a
user can act on. Callers add what they know: the spec checks attach a file
position and a hint, the search prunes, a pin is rejected with the reason.
DeepSpeed defaults that both the generated ds_config.json and the memory and
cost models rely on live in `rules.deepspeed`.
"""
