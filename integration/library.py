"""The compiled library: an immutable in-process snapshot of the content model.

`compile_library` never fails on one bad entry: it skips it, records a `LibraryIssue` and
compiles the rest. The `Library` answers slot lookups and pre-encoded, localized entry payloads
(cached per entry, variant and locale) so that the assemble path does no JSON re-encoding.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import structlog

from integration.compiler import (
    FieldReader,
    ModelError,
    parse_audience,
    parse_experiment,
    parse_variant,
    slot_arms,
)
from integration.model import (
    AUDIENCE,
    EXPERIMENT,
    SETTINGS,
    SLOT,
    TEMPLATE,
    VARIANT,
    Audience,
    Condition,
    Experiment,
    LibraryIssue,
    Slot,
    Template,
    Variant,
)
from integration.resolve import Resolver, fallback_chains
from integration.schemas import Entity, entity_key
from integration.store import StoredContent

log = structlog.get_logger()
T = TypeVar("T")
_EMPTY_STYLE = orjson.Fragment(b"{}")  # most answers carry no style: one shared fragment


RenderKey = tuple[str, str, str]  # (entry id, variant id or "", locale)
# Entity key → the cached renders that read it. Tuples, not sets (a set costs 200 bytes, most
# entities are read by a render or two); immutable, so a snapshot's copy never sees another's.
RenderDeps = dict[str, tuple[RenderKey, ...]]


def _depend(deps: RenderDeps, key: str, cache_key: RenderKey) -> None:
    held = deps.get(key, ())
    if cache_key not in held:
        deps[key] = (*held, cache_key)


@dataclass(frozen=True, slots=True)
class RenderedEntry:
    """The `entry` and `style` members of a slot answer, already encoded."""

    entry: orjson.Fragment
    style: orjson.Fragment


@dataclass(frozen=True)
class Library:
    version: int
    templates: Mapping[str, Template]
    slots: Mapping[str, Slot]
    default_locale: str
    locales: frozenset[str]
    issues: tuple[LibraryIssue, ...] = ()
    kill_switch: bool = False
    built_at: float = field(default_factory=time.time)
    resolver: Resolver | None = None
    _rendered: dict[RenderKey, RenderedEntry | None] = field(
        default_factory=dict, repr=False, compare=False
    )
    _render_deps: RenderDeps = field(default_factory=dict, repr=False, compare=False)
    """Entity key → the cached renders that read it (over-approximate: stale members are fine)."""

    def render(self, entry_id: str, variant: Variant | None, locale: str) -> RenderedEntry | None:
        """Localized entry and merged style for a slot answer; cached for the snapshot's life
        and carried into the next snapshot when nothing it read changed (`carried_renders`)."""
        cache_key = (entry_id, variant.id if variant else "", locale)
        if cache_key in self._rendered:
            return self._rendered[cache_key]
        read: set[str] = set()
        rendered = self._render(entry_id, variant, locale, read)
        if variant is not None:
            read.add(entity_key("Entry", variant.id))
        for key in read:  # the dependencies first, then the entry they guard
            _depend(self._render_deps, key, cache_key)
        self._rendered[cache_key] = rendered
        return rendered

    def _render(
        self, entry_id: str, variant: Variant | None, locale: str, read: set[str]
    ) -> RenderedEntry | None:
        entry = self.resolver.entry(entry_id, locale, read) if self.resolver else None
        if entry is None:
            return None
        own_style = entry["fields"].get("style")
        style = dict(own_style) if isinstance(own_style, dict) else {}
        if variant is not None:
            style.update(variant.style)
        encoded_style = orjson.dumps(style)
        return RenderedEntry(
            entry=orjson.Fragment(_kept(orjson.dumps(entry))),
            style=_EMPTY_STYLE if encoded_style == b"{}" else orjson.Fragment(_kept(encoded_style)),
        )

    def carried_renders(
        self, changed: Iterable[str]
    ) -> tuple[dict[RenderKey, RenderedEntry | None], RenderDeps]:
        """This snapshot's render cache without what read a `changed` entity key, for the next.

        The copies are flat (C-level dict copies); only the renders of changed keys are dropped.
        """
        rendered, deps = self._rendered.copy(), self._render_deps.copy()
        for key in changed:
            for cache_key in deps.pop(key, ()):
                rendered.pop(cache_key, None)
        return rendered, deps

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "templates": len(self.templates),
            "slots": len(self.slots),
            "issues": [i.to_json() for i in self.issues],
        }


class _Compiler:
    """The full compile; `integration.builder` reuses its per-entry rules one entry at a time."""

    def __init__(
        self,
        content: StoredContent,
        link_depth: int,
        conditions: dict[bytes, Condition] | None = None,
    ) -> None:
        self.content = content
        self.link_depth = link_depth
        self.conditions = conditions
        self.issues: list[LibraryIssue] = []
        locales = content.locales
        default = next((x.code for x in locales if x.default), None)
        self.default_locale = default or (locales[0].code if locales else "en-US")

    @functools.cached_property
    def by_type(self) -> dict[str, list[Entity]]:
        by_type: dict[str, list[Entity]] = {}
        for entity in self.content.entities.values():
            if entity.kind == "Entry" and entity.content_type:
                by_type.setdefault(entity.content_type, []).append(entity)
        return by_type

    def reader(self, entity: Entity) -> FieldReader:
        return FieldReader(entity, self.default_locale, self.conditions)

    def report(self, entity: Entity, problem: str) -> None:
        self.issues.append(LibraryIssue(entity.id, entity.content_type, problem))
        log.warning(
            "library.entry_skipped",
            entry_id=entity.id,
            content_type=entity.content_type,
            problem=problem,
        )

    def parse_all(self, type_id: str, parse: Callable[[FieldReader], T]) -> dict[str, T]:
        """Parse every entry of a type, keyed by entry id; bad entries are reported."""
        parsed: dict[str, T] = {}
        for entity in self.by_type.get(type_id, []):
            try:
                parsed[entity.id] = parse(self.reader(entity))
            except ModelError as exc:
                self.report(entity, str(exc))
        return parsed

    def has_entry(self, entry_id: str) -> bool:
        return entity_key("Entry", entry_id) in self.content.entities

    def compile(self) -> Library:
        audiences = self.parse_all(AUDIENCE, parse_audience)
        experiments = self.parse_all(EXPERIMENT, parse_experiment)
        self._mode_problems(experiments.values())
        variants = self.parse_all(VARIANT, lambda r: self._variant(r, audiences, experiments))
        slots = self.parse_all(SLOT, lambda r: self._slot(r, variants))
        templates = self.parse_all(TEMPLATE, lambda r: self._template(r, slots))
        kill_switch, default_locale = self._settings()
        chains = fallback_chains(self.content.locales)
        return Library(
            version=self.content.version,
            templates=_unique_keys(templates, self),
            slots=_unique_keys(slots, self),
            default_locale=default_locale,
            locales=frozenset(chains) or frozenset({default_locale}),
            issues=tuple(self.issues),
            kill_switch=kill_switch,
            resolver=Resolver(self.content.entities, chains, self.link_depth),
        )

    def _mode_problems(self, experiments: Iterable[Experiment]) -> None:
        """An unknown `mode` runs as `ab`: reported like the other repaired experiment fields."""
        for experiment in experiments:
            if experiment.mode_problem is None:
                continue
            problem = experiment.mode_problem
            self.issues.append(LibraryIssue(experiment.id, EXPERIMENT, problem))
            structlog.get_logger().warning(  # the logging config of the moment
                "library.experiment_invalid", experiment=experiment.key, problem=problem
            )

    def _variant(
        self, r: FieldReader, audiences: dict[str, Audience], experiments: dict[str, Experiment]
    ) -> Variant:
        variant = parse_variant(r, audiences, experiments)
        if not self.has_entry(variant.entry_id):
            raise ModelError(f"its entry {variant.entry_id} is missing or unpublished")
        return variant

    def _slot(self, r: FieldReader, variants: dict[str, Variant]) -> Slot:
        key = r.text("key", required=True) or ""
        baseline = r.link("baseline", required=True) or ""
        if not self.has_entry(baseline):
            raise ModelError(f"its baseline {baseline} is missing or unpublished")
        chosen = []
        for variant_id in r.links("variants"):
            if variant_id in variants:
                chosen.append(variants[variant_id])
            else:
                self.report(r.entity, f"variant {variant_id} is missing or invalid; left out")
        arms, problems = slot_arms(key, chosen)  # the editor's order, before the rule order
        self.issues.extend(problems)
        return Slot(
            id=r.entity.id,
            key=key,
            baseline_id=baseline,
            variants=tuple(sorted(chosen, key=_variant_rank)),
            category=r.text("category"),
            pinned=r.flag("pinned", False),
            kill_switch=r.flag("killSwitch", False),
            arms=arms,
            listed=tuple(v.key for v in chosen),
            model_threshold=r.number("modelThreshold", low=0, high=1),
        )

    def _template(self, r: FieldReader, slots: dict[str, Slot]) -> Template:
        chosen = []
        for slot_id in r.links("slots"):
            if slot_id in slots:
                chosen.append(slots[slot_id])
            else:
                self.report(r.entity, f"slot {slot_id} is missing or invalid; left out")
        sequencing = r.text("sequencing") or "fixed"
        if sequencing not in ("fixed", "engagement"):
            raise ModelError(f"field 'sequencing' must be fixed or engagement, got {sequencing!r}")
        return Template(
            id=r.entity.id,
            key=r.text("key", required=True) or "",
            slots=tuple(chosen),
            sequencing=sequencing,  # type: ignore[arg-type]
            max_personalized=r.integer("maxPersonalized"),
            kill_switch=r.flag("killSwitch", False),
        )

    def _settings(self) -> tuple[bool, str]:
        entries = sorted(self.by_type.get(SETTINGS, []), key=lambda e: e.updated_at, reverse=True)
        if not entries:
            return False, self.default_locale
        for extra in entries[1:]:
            self.report(extra, "more than one mbSettings entry; the most recent one is used")
        r = self.reader(entries[0])
        try:
            locale = r.text("defaultLocale") or self.default_locale
            return r.flag("killSwitch", False), locale
        except ModelError as exc:
            self.report(entries[0], str(exc))
            return False, self.default_locale


def _kept(encoded: bytes) -> bytes:
    """An exact-size copy of orjson's output, for what a snapshot keeps: `orjson.dumps` returns
    its working buffer (4 KB for a few hundred bytes of JSON), ten times what a render needs."""
    return bytes(memoryview(encoded))


def _variant_rank(variant: Variant) -> tuple[int, str]:
    """Sort key: higher priority first, then most recently published (ISO strings sort)."""
    return (-variant.priority, _invert(variant.updated_at))


def _invert(text: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


K = TypeVar("K", Slot, Template)


def _unique_keys(items: Mapping[str, K], compiler: _Compiler) -> dict[str, K]:
    """Index by `key`; on a duplicate key the first compiled wins and the other is reported."""
    by_key: dict[str, K] = {}
    for item in items.values():
        if item.key in by_key:
            entity = compiler.content.entities[entity_key("Entry", item.id)]
            compiler.report(entity, f"duplicate key {item.key!r}; left out")
            continue
        by_key[item.key] = item
    return by_key


def compile_library(content: StoredContent, *, link_depth: int = 2) -> Library:
    started = time.perf_counter()
    library = _Compiler(content, link_depth).compile()
    log_compiled(library, started)
    return library


def log_compiled(library: Library, started: float, **more: int) -> None:
    """`library.compiled`: what was built and how long it took since `started` (perf_counter)."""
    log.info(
        "library.compiled",
        version=library.version,
        **more,
        templates=len(library.templates),
        slots=len(library.slots),
        issues=len(library.issues),
        ms=round((time.perf_counter() - started) * 1000, 2),
    )
