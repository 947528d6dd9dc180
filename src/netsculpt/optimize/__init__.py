"""optimize: reach a latency / MACs / params budget by a NetAdapt-style search over width
reductions, block removals and exact folds (docs/optimize.md).

``ns.optimize(model, example_inputs, data=..., target={"latency": 0.5}, max_drop=0.01)``; the
op registry's entry is :mod:`netsculpt.optimize.op`. This package sits above ``engine`` and
``heal``: it runs the other ops' planners through one session and heals between steps.
"""
