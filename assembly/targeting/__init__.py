"""Targeting: who a condition or an experiment picks. A leaf that imports nothing of ours.

* ``compiler``: GrowthBook's condition dialect compiled once into a ``CompiledCondition``
  (semantics documented there); ``exceptions``: ``ConditionError``.
* ``operators``: the operator table and literal comparisons; ``predicates``: how compiled tests
  combine; ``paths``: how ``a.b.c`` is read from the visitor's context.
* ``jsvalues``: JavaScript's coercions over JSON-like values; ``regex``: JavaScript regular
  expressions on Python's ``re``; ``versions``: the order of the ``$v...`` operators.
* ``bucketing``: GrowthBook's hashing and bucketing for experiments.

Both the library compiler (``integration``) and the engine (``assembly``) use it; the import
contract in pyproject.toml keeps it a leaf.
"""
