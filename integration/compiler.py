"""Entities in our content model → the typed model of `integration.model`.

Each parser either returns the compiled object or raises `ModelError`; the library compiler
turns that into a `LibraryIssue` and skips only that entry. Targeting fields are read in the
default locale (they are not meant to be localized).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from assembly.targeting.compiler import compile_condition
from assembly.targeting.exceptions import ConditionError
from integration.model import (
    EXPERIMENT,
    Arms,
    Audience,
    CapPeriod,
    Condition,
    Experiment,
    ExperimentMode,
    FrequencyCap,
    LibraryIssue,
    Namespace,
    Variant,
    group_arms,
)
from integration.resolve import link_id
from integration.schemas import Entity

log = structlog.get_logger()


class ModelError(ValueError):
    """An entry breaks the content model; the message says how."""


class FieldReader:
    """Reads one entity's fields in one locale.

    `conditions` (spec JSON → compiled condition) lets equal conditions share one compiled
    object across entries and across compiles: less memory, and an unchanged entry compiles to
    a value equal to the previous one, which is what lets the incremental library stop there.
    """

    def __init__(
        self, entity: Entity, locale: str, conditions: dict[bytes, Condition] | None = None
    ) -> None:
        self.entity = entity
        self._locale = locale
        self._conditions = conditions

    def raw(self, name: str) -> Any:
        values = self.entity.fields.get(name)
        if not values:
            return None
        if self._locale in values:
            return values[self._locale]
        return next(iter(values.values()))

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None or value == "":
            if required:
                raise ModelError(f"field {name!r} is required")
            return None
        if not isinstance(value, str):
            raise ModelError(f"field {name!r} must be text, got {type(value).__name__}")
        return value

    def number(
        self, name: str, *, low: float | None = None, high: float | None = None
    ) -> float | None:
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelError(f"field {name!r} must be a number")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ModelError(f"field {name!r} must be between {low} and {high}, got {value}")
        return float(value)

    def integer(self, name: str) -> int | None:
        value = self.number(name)
        if value is None:
            return None
        if value != int(value):
            raise ModelError(f"field {name!r} must be an integer")
        return int(value)

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ModelError(f"field {name!r} must be true or false")
        return value

    def symbols(self, name: str) -> frozenset[str]:
        value = self.raw(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ModelError(f"field {name!r} must be a list of text")
        return frozenset(value)

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.raw(name) or {}
        if not isinstance(value, dict):
            raise ModelError(f"field {name!r} must be a JSON object")
        return value

    def condition(self, name: str = "conditions") -> Condition | None:
        spec = self.mapping(name)
        if not spec:
            return None
        memo_key = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)
        known = self._conditions.get(memo_key) if self._conditions is not None else None
        if known is not None:
            return known
        try:
            compiled = compile_condition(spec)
        except ConditionError as exc:
            raise ModelError(f"field {name!r} is not a valid condition: {exc}") from exc
        if self._conditions is not None:
            self._conditions[memo_key] = compiled
        return compiled

    def date(self, name: str) -> datetime | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ModelError(f"field {name!r} is not an ISO date: {value!r}") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def link(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw(name)
        target = link_id(value)
        if target is None and (required or value is not None):
            raise ModelError(f"field {name!r} must link an entry")
        return target

    def links(self, name: str) -> list[str]:
        value = self.raw(name) or []
        if not isinstance(value, list):
            raise ModelError(f"field {name!r} must be a list of links")
        ids = [link_id(v) for v in value]
        if any(i is None for i in ids):
            raise ModelError(f"field {name!r} must hold only entry links")
        return [i for i in ids if i is not None]


def parse_audience(r: FieldReader) -> Audience:
    return Audience(
        id=r.entity.id,
        key=r.text("key", required=True) or "",
        segments=r.symbols("segments"),
        personas=r.symbols("personas"),
        condition=r.condition(),
        max_age_seconds=_max_age(r),
    )


def _max_age(r: FieldReader) -> int | None:
    value = r.integer("maxAgeSeconds")
    if value is not None and value < 0:
        raise ModelError(f"field 'maxAgeSeconds' must be 0 or more seconds, got {value}")
    return value


def parse_experiment(r: FieldReader) -> Experiment:
    key = r.text("key", required=True) or ""
    status = r.text("status") or "draft"
    if status not in ("draft", "running", "stopped"):
        raise ModelError(f"field 'status' must be draft, running or stopped, got {status!r}")
    mode, mode_problem = _mode(r, key)
    return Experiment(
        id=r.entity.id,
        key=key,
        status=status,  # type: ignore[arg-type]
        coverage=r.number("coverage", low=0, high=1) or (0.0 if r.raw("coverage") == 0 else 1.0),
        seed=r.text("seed") or key,
        hash_attribute=r.text("hashAttribute") or "id",
        namespace=_namespace(r.mapping("namespace")),
        goal_event=r.text("goalEvent"),
        control_weight=r.number("controlWeight", low=0),
        winner=r.integer("winner"),
        mode=mode,
        mode_problem=mode_problem,
    )


def _mode(r: FieldReader, key: str) -> tuple[ExperimentMode, str | None]:
    """`mode`: `ab` (also when empty), `bandit` or `contextual`; anything else runs as `ab`, with
    the problem reported (an editor's typo must not stop the test)."""
    mode = r.raw("mode")
    if mode is None or mode in ("", "ab"):
        return "ab", None
    if mode == "bandit":
        return "bandit", None
    if mode == "contextual":
        return "contextual", None
    return (
        "ab",
        f"experiment {key}: mode {mode!r} is not 'ab', 'bandit' or 'contextual'; it runs as 'ab'",
    )


def _namespace(spec: Mapping[str, Any]) -> Namespace | None:
    if not spec:
        return None
    try:
        ns = Namespace(id=str(spec["id"]), start=float(spec["start"]), end=float(spec["end"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError("field 'namespace' must be {id, start, end}") from exc
    if not 0 <= ns.start <= ns.end <= 1:
        raise ModelError("field 'namespace' needs 0 <= start <= end <= 1")
    return ns


def parse_variant(
    r: FieldReader, audiences: Mapping[str, Audience], experiments: Mapping[str, Experiment]
) -> Variant:
    audience_ids = r.links("audiences")
    missing = [a for a in audience_ids if a not in audiences]
    if missing:
        raise ModelError(f"links audiences that are missing or invalid: {', '.join(missing)}")
    experiment_id = r.link("experiment")
    if experiment_id is not None and experiment_id not in experiments:
        raise ModelError(f"links experiment {experiment_id} which is missing or invalid")
    return Variant(
        id=r.entity.id,
        key=r.text("key", required=True) or "",
        entry_id=r.link("entry", required=True) or "",
        audiences=tuple(audiences[a] for a in audience_ids),
        condition=r.condition(),
        priority=r.integer("priority") or 0,
        weight=r.number("weight", low=0),
        experiment=experiments[experiment_id] if experiment_id else None,
        rollout=r.number("rollout", low=0, high=1),
        start_at=r.date("startAt"),
        end_at=r.date("endAt"),
        frequency_cap=_frequency_cap(r.mapping("frequencyCap")),
        style=r.mapping("style"),
        enabled=r.flag("enabled", True),
        updated_at=r.entity.updated_at,
        model_threshold=r.number("modelThreshold", low=0, high=1),
    )


def _frequency_cap(spec: Mapping[str, Any]) -> FrequencyCap | None:
    if not spec:
        return None
    limit, per = spec.get("max"), spec.get("per")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ModelError("field 'frequencyCap.max' must be a whole number >= 0")
    if per not in ("session", "day", "week", "lifetime"):
        raise ModelError("field 'frequencyCap.per' must be session, day, week or lifetime")
    period: CapPeriod = per
    return FrequencyCap(max=limit, per=period)


def slot_arms(
    slot_key: str, listed: Sequence[Variant]
) -> tuple[dict[str, Arms], list[LibraryIssue]]:
    """The slot's experiment arms in the editor's list order, and what is wrong with them.

    Weights GrowthBook would not use (missing, or not summing to 0.99 to 1.01) get an equal split,
    and a `winner` that names no arm serves the baseline: both are reported, never repaired
    silently (`library.experiment_invalid` log, `/readyz` → `library.issues`).
    """
    arms = group_arms(listed)
    issues = []
    for group in arms.values():
        for problem in _arm_problems(group):
            experiment = group.experiment
            issues.append(LibraryIssue(experiment.id, EXPERIMENT, f"{problem} in slot {slot_key}"))
            # a fresh logger: the logging config of the moment (a library is compiled rarely)
            structlog.get_logger().warning(
                "library.experiment_invalid",
                experiment=experiment.key,
                slot=slot_key,
                problem=problem,
                weights=list(group.weights),
            )
    return arms, issues


def _arm_problems(arms: Arms) -> list[str]:
    problems = [arms.problem] if arms.problem else []
    winner = arms.experiment.winner
    if winner is not None and not 0 <= winner <= len(arms.variants):
        problems.append(
            f"experiment {arms.experiment.key}: winner {winner} is no arm "
            f"(0 = control, 1 to {len(arms.variants)} = the arms in list order); "
            "the baseline is served"
        )
    return problems
