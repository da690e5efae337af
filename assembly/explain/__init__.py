"""Explain a page view: every slot's candidates, each rule's outcome and what it read.

`POST /admin/explain` and `cli.py explain` answer "why did this visitor see that?" for the same
body as `POST /v1/assemble`. The explanation is a separate evaluation that walks the engine's
decision order (`assembly.decisions.rules`) with the engine's own predicates and their
explainable twins (the same test, returning what it read). It writes nothing: no exposures,
counts, assignments or session marks. The hot path does no bookkeeping for it.
"""
