"""The incremental library: a change recompiles what it touches, not the whole library.

`LibraryBuilder` keeps the entities, every compiled audience, experiment, variant, slot and
template by entry id, the issues each one raised, and a reverse-link index (entry id → the model
entries whose fields link it). `apply` recompiles the changed entries stage by stage (audiences
and experiments, variants, slots, templates) with the full compiler's own per-entry rules
(`integration.library._Compiler`), and goes on to the entries that link a node only when the
node's compiled value changed. Unchanged compiled objects are shared by the next snapshot, and
renders that read nothing that changed are carried over (`Library.carried_renders`).

The result equals `compile_library` over the builder's entities in the builder's order (entries
keep their place when updated; new ones go last, as the holder's patches always did): on a
duplicate key the entry first in that order wins, and issues are listed stage by stage in that
order. tests/integration/test_incremental.py checks it after random change sequences.

Cost: the work proportional to the change, plus flat copies of a few dicts (entities, keys,
render cache) so that a snapshot already handed out never changes.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from integration.compiler import ModelError, parse_audience, parse_experiment
from integration.library import Library, _Compiler, log_compiled
from integration.model import (
    AUDIENCE,
    EXPERIMENT,
    SETTINGS,
    SLOT,
    TEMPLATE,
    VARIANT,
    Condition,
    LibraryIssue,
)
from integration.resolve import Resolver, fallback_chains
from integration.schemas import Entity, Locale
from integration.store import StoredContent

log = structlog.get_logger()

STAGES = (AUDIENCE, EXPERIMENT, VARIANT, SLOT, TEMPLATE)
_MODES = "mbExperiment.mode"  # repaired experiment modes: listed after every experiment's parse
_BUCKETS = (AUDIENCE, EXPERIMENT, _MODES, VARIANT, SLOT, TEMPLATE)  # the full compile's order
_KEYED = (TEMPLATE, SLOT)  # indexed by `key`; duplicates reported in this order
_ENTRY = "Entry:"


class LibraryBuilder:
    """Compiled state of one content store, kept up to date change by change.

    Thread-safe: `apply` holds a lock, so a compile running in a worker thread that its caller
    stopped waiting for still finishes before the next one starts.
    """

    def __init__(self, content: StoredContent, *, link_depth: int) -> None:
        self.locales: list[Locale] = list(content.locales)
        self.link_depth = link_depth
        self.library: Library | None = None
        self.recompiled = 0  # the nodes the last compile recompiled: what the change cost
        self._mutex = threading.Lock()
        self._entities: dict[str, Entity] = {}
        self._seq: dict[str, int] = {}  # entity key → its place in the store's order
        self._counter = itertools.count()
        self._conditions: dict[bytes, Condition] = {}  # equal conditions share one compiled
        self._chains = fallback_chains(self.locales)
        self._tables: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES}
        self._issues: dict[str, dict[str, tuple[LibraryIssue, ...]]] = {b: {} for b in _BUCKETS}
        self._links: dict[str, tuple[str, ...]] = {}  # model entry id → entry ids it links
        self._dependents: dict[str, str | set[str]] = {}  # entry id → model entries linking it
        self._claims: dict[str, dict[str, set[str]]] = {stage: {} for stage in _KEYED}
        self._rekeyed: dict[str, set[str]] = {stage: set() for stage in _KEYED}
        self._published: dict[str, dict[str, Any]] = {stage: {} for stage in _KEYED}
        self._duplicates: dict[str, dict[str, LibraryIssue]] = {stage: {} for stage in _KEYED}
        self._settings_ids: set[str] = set()
        self._settings: tuple[bool, str, tuple[LibraryIssue, ...]] | None = None
        self._issue_list: tuple[LibraryIssue, ...] = ()
        self._issues_stale = True
        self._adopt(content)

    def _adopt(self, content: StoredContent) -> None:
        """Compile everything in `content`, whose entities dict becomes this builder's own (it
        is never changed: every `apply` works on a copy)."""
        with self._mutex:
            started = time.perf_counter()
            self._entities = content.entities
            touched = set()
            for key, entity in content.entities.items():
                self._seq[key] = next(self._counter)
                if entity.kind == "Entry":
                    touched.add(entity.id)
                    self._note_entry(entity.id, None, entity)
            self._rebuild(content.version, touched, (), started)

    @property
    def entities(self) -> dict[str, Entity]:
        """The entities of the last snapshot (never changed afterwards: each apply copies)."""
        return self._entities

    def diff(self, entities: Mapping[str, Entity]) -> dict[str, Entity | None]:
        """The changes that turn this builder's entities into `entities` (None: removed)."""
        mine = self._entities
        changes: dict[str, Entity | None] = {
            key: entity for key, entity in entities.items() if mine.get(key) != entity
        }
        changes.update((key, None) for key in mine if key not in entities)
        return changes

    def apply(self, version: int, changes: Mapping[str, Entity | None]) -> Library:
        """The snapshot at `version` after `changes` (entity key → entity, None = removed)."""
        with self._mutex:
            return self._apply(version, changes)

    def rebase(self, version: int, entities: Mapping[str, Entity]) -> Library:
        """The snapshot at `version` of exactly `entities` (a full read of the store): only the
        difference is applied, under the same lock as the diff."""
        with self._mutex:
            return self._apply(version, self.diff(entities))

    def _apply(self, version: int, changes: Mapping[str, Entity | None]) -> Library:
        started = time.perf_counter()
        touched = self._write(changes)
        return self._rebuild(version, touched, changes.keys(), started)

    def _rebuild(
        self, version: int, touched: set[str], changed: Iterable[str], started: float
    ) -> Library:
        compiler = _Compiler(
            StoredContent(version, self._entities, self.locales), self.link_depth, self._conditions
        )
        self.recompiled = self._recompile(compiler, touched)
        library = self._snapshot(version, compiler, changed)
        self.library = library
        log_compiled(library, started, touched=len(touched), recompiled=self.recompiled)
        return library

    def _write(self, changes: Mapping[str, Entity | None]) -> set[str]:
        """Apply the changes to a copy of the entities; the entry ids they touch."""
        if not changes:
            return set()
        entities = dict(self._entities)
        touched: set[str] = set()
        for key, entity in changes.items():
            old = entities.get(key)
            if entity is None:
                entities.pop(key, None)
                self._seq.pop(key, None)
            else:
                if key not in entities:
                    self._seq[key] = next(self._counter)
                entities[key] = entity
            if key.startswith(_ENTRY):
                known = entity or old
                entry_id = known.id if known is not None else key[len(_ENTRY) :]
                touched.add(entry_id)
                self._note_entry(entry_id, old, entity)
        self._entities = entities
        return touched

    def _note_entry(self, entry_id: str, old: Entity | None, entity: Entity | None) -> None:
        """Keep the reverse-link index and the settings entries in step with one entry."""
        self._relink(entry_id, entity)
        if _is(old, SETTINGS) or _is(entity, SETTINGS):
            self._settings = None
            self._settings_ids.discard(entry_id)
            if _is(entity, SETTINGS):
                self._settings_ids.add(entry_id)

    def _relink(self, entry_id: str, entity: Entity | None) -> None:
        for target in self._links.pop(entry_id, ()):
            self._unlink(target, entry_id)
        if entity is None or entity.content_type not in STAGES:
            return
        targets = tuple(self._canonical(t) for t in _linked_ids(entity))
        if targets:
            self._links[entry_id] = targets
            for target in targets:
                self._link(target, entry_id)

    def _canonical(self, entry_id: str) -> str:
        """The id string the entity itself holds, so the index shares it instead of a copy."""
        entity = self._entities.get(_ENTRY + entry_id)
        return entity.id if entity is not None else entry_id

    def _link(self, target: str, entry_id: str) -> None:
        """Most entries are linked by one entry: a plain id, a set only for several."""
        held = self._dependents.get(target)
        if held is None:
            self._dependents[target] = entry_id
        elif isinstance(held, str):
            if held != entry_id:
                self._dependents[target] = {held, entry_id}
        else:
            held.add(entry_id)

    def _unlink(self, target: str, entry_id: str) -> None:
        held = self._dependents.get(target)
        if isinstance(held, str):
            if held == entry_id:
                del self._dependents[target]
        elif held is not None:
            held.discard(entry_id)
            if len(held) == 1:
                self._dependents[target] = next(iter(held))

    def _dependents_of(self, entry_id: str) -> Iterable[str]:
        held = self._dependents.get(entry_id)
        if held is None:
            return ()
        return (held,) if isinstance(held, str) else held

    def _recompile(self, compiler: _Compiler, touched: set[str]) -> int:
        """Recompile the touched entries and, stage by stage, whatever links a changed node."""
        queues: dict[str, list[str]] = {stage: [] for stage in STAGES}
        queued: set[str] = set()

        def enqueue(entry_ids: Iterable[str]) -> None:
            for entry_id in entry_ids:
                if entry_id not in queued:
                    queued.add(entry_id)
                    for stage in self._stages_of(entry_id):
                        queues[stage].append(entry_id)

        enqueue(touched)
        for entry_id in touched:
            enqueue(self._dependents_of(entry_id))
        count = 0
        for stage in STAGES:
            for entry_id in queues[stage]:  # grows while it runs only with later stages' ids
                count += 1
                if self._compile(stage, compiler, entry_id):
                    enqueue(self._dependents_of(entry_id))
        return count

    def _stages_of(self, entry_id: str) -> list[str]:
        """The stages an entry belongs to: its type's now, and any holding a record of it."""
        entity = self._entities.get(_ENTRY + entry_id)
        now = entity.content_type if entity is not None else None
        return [
            stage
            for stage in STAGES
            if stage == now or entry_id in self._tables[stage] or entry_id in self._issues[stage]
        ]

    def _compile(self, stage: str, compiler: _Compiler, entry_id: str) -> bool:
        """Recompile one node; True when its compiled value changed (its dependents follow)."""
        entity = self._entities.get(_ENTRY + entry_id)
        table = self._tables[stage]
        old = table.get(entry_id)
        issues: dict[str, list[LibraryIssue]] = {}
        new = None
        if entity is not None and entity.content_type == stage:
            new = self._parse(stage, compiler, entity, issues)
        for bucket in (stage, _MODES) if stage == EXPERIMENT else (stage,):
            self._note_issues(bucket, entry_id, tuple(issues.get(bucket, ())))
        if new is not None and old is not None and new == old:
            new = old  # equal: keep sharing the object every snapshot already holds
        if new is None:
            table.pop(entry_id, None)
        else:
            table[entry_id] = new
        if new is old:
            return False
        if stage in _KEYED:
            self._rekey(stage, entry_id, old, new)
        return True

    def _parse(
        self, stage: str, c: _Compiler, entity: Entity, issues: dict[str, list[LibraryIssue]]
    ) -> Any:
        """One entry through the full compiler's rules; its issues land in `issues`."""
        c.issues = issues.setdefault(stage, [])
        r = c.reader(entity)
        try:
            if stage == AUDIENCE:
                return parse_audience(r)
            if stage == EXPERIMENT:
                experiment = parse_experiment(r)
                c.issues = issues.setdefault(_MODES, [])
                c._mode_problems([experiment])
                return experiment
            if stage == VARIANT:
                return c._variant(r, self._tables[AUDIENCE], self._tables[EXPERIMENT])
            if stage == SLOT:
                return c._slot(r, self._tables[VARIANT])
            return c._template(r, self._tables[SLOT])
        except ModelError as exc:
            c.report(entity, str(exc))
            return None

    def _note_issues(self, bucket: str, entry_id: str, issues: tuple[LibraryIssue, ...]) -> None:
        held = self._issues[bucket]
        if held.get(entry_id, ()) == issues:
            return
        self._issues_stale = True
        if issues:
            held[entry_id] = issues
        else:
            held.pop(entry_id, None)

    def _rekey(self, stage: str, entry_id: str, old: Any, new: Any) -> None:
        claims = self._claims[stage]
        if old is not None:
            claims[old.key].discard(entry_id)
            if not claims[old.key]:
                del claims[old.key]
            self._rekeyed[stage].add(old.key)
        if new is not None:
            claims.setdefault(new.key, set()).add(entry_id)
            self._rekeyed[stage].add(new.key)
        if self._duplicates[stage].pop(entry_id, None) is not None:
            self._issues_stale = True

    def _snapshot(self, version: int, c: _Compiler, changed: Iterable[str]) -> Library:
        templates, slots = self._by_key(TEMPLATE), self._by_key(SLOT)
        kill_switch, default_locale, _ = self._settings_of(c)
        previous = self.library
        rendered, deps = previous.carried_renders(changed) if previous else ({}, {})
        return Library(
            version=version,
            templates=templates,
            slots=slots,
            default_locale=default_locale,
            locales=frozenset(self._chains) or frozenset({default_locale}),
            issues=self._all_issues(),
            kill_switch=kill_switch,
            resolver=Resolver(self._entities, self._chains, self.link_depth),
            _rendered=rendered,
            _render_deps=deps,
        )

    def _by_key(self, stage: str) -> dict[str, Any]:
        """The published key → node map: the previous one with the re-keyed keys redone."""
        rekeyed = self._rekeyed[stage]
        if not rekeyed:
            return self._published[stage]
        published = dict(self._published[stage])
        table, duplicates = self._tables[stage], self._duplicates[stage]
        for key in rekeyed:
            claimants = sorted(self._claims[stage].get(key, ()), key=self._place)
            if not claimants:
                published.pop(key, None)
                continue
            published[key] = table[claimants[0]]
            duplicates.pop(claimants[0], None)
            for loser in claimants[1:]:
                if loser not in duplicates:
                    duplicates[loser] = self._duplicate(loser, key)
        rekeyed.clear()
        self._issues_stale = True
        self._published[stage] = published
        return published

    def _duplicate(self, entry_id: str, key: str) -> LibraryIssue:
        entity = self._entities[_ENTRY + entry_id]
        problem = f"duplicate key {key!r}; left out"
        log.warning(
            "library.entry_skipped",
            entry_id=entry_id,
            content_type=entity.content_type,
            problem=problem,
        )
        return LibraryIssue(entry_id, entity.content_type, problem)

    def _place(self, entry_id: str) -> int:
        return self._seq[_ENTRY + entry_id]

    def _settings_of(self, c: _Compiler) -> tuple[bool, str, tuple[LibraryIssue, ...]]:
        if self._settings is None:
            entries = [
                self._entities[_ENTRY + i] for i in sorted(self._settings_ids, key=self._place)
            ]
            c.by_type = {SETTINGS: entries}
            c.issues = []
            kill_switch, default_locale = c._settings()
            self._settings = (kill_switch, default_locale, tuple(c.issues))
            self._issues_stale = True
        return self._settings

    def _all_issues(self) -> tuple[LibraryIssue, ...]:
        """Every issue in the full compile's order: by stage, then store order."""
        if not self._issues_stale:
            return self._issue_list
        found: list[LibraryIssue] = []
        for bucket in _BUCKETS:
            for entry_id in sorted(self._issues[bucket], key=self._place):
                found.extend(self._issues[bucket][entry_id])
        found.extend(self._settings[2] if self._settings else ())
        for stage in _KEYED:
            duplicates = self._duplicates[stage]
            found.extend(duplicates[i] for i in sorted(duplicates, key=self._place))
        self._issue_list = tuple(found)
        self._issues_stale = False
        return self._issue_list


def _is(entity: Entity | None, content_type: str) -> bool:
    return entity is not None and entity.content_type == content_type


def _linked_ids(entity: Entity) -> set[str]:
    """Every entry id the entity's fields link, in any locale: a superset of what the compiler
    reads (`link_id`), which is all a dependency needs."""
    found: set[str] = set()
    for values in entity.fields.values():
        for value in values.values():
            for item in value if isinstance(value, list) else (value,):
                sys = item.get("sys") if isinstance(item, dict) else None
                if isinstance(sys, dict) and sys.get("linkType") == "Entry":
                    target = sys.get("id")
                    if isinstance(target, str):
                        found.add(target)
    return found
