"""The incremental library equals a full compile after any sequence of changes.

Random sequences of publishes (the demo space's entries, edited copies that break or change
them, duplicate keys, a second settings entry, the Contentful reference space), unpublishes and
deletes, alone or several at once, are applied to one `LibraryBuilder`; after every step its
snapshot must equal `compile_library` over the same entities: templates, slots, issues (in
order), settings, and every render a slot can answer (which checks the carried render cache).
Then what a change costs (the nodes it recompiles), and the holder adopting the generation the
sync validated instead of compiling it a second time.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from core.redis import Keys
from integration.builder import LibraryBuilder
from integration.library import Library, compile_library
from integration.model import Condition
from integration.normalize import normalize_entity
from integration.schemas import Entity, Locale
from integration.service import LibraryHolder
from integration.store import ContentStore, ContentWrite, StoredContent
from integration.sync import SyncService
from tests.fakes.contentful import FakeContentful
from tests.integration.test_sync import source_for
from tests.support.demo import demo_items

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "contentful"
LOCALES = [Locale("en-US", default=True), Locale("de-DE", fallback_code="en-US")]


def _edited(item_id: str, revision: int, **fields: Any) -> dict[str, Any]:
    item = copy.deepcopy(demo_items()[item_id])
    for name, value in fields.items():
        item["fields"][name] = (
            value if isinstance(value, dict) and "en-US" in value else {"en-US": value}
        )
    item["sys"]["revision"] += revision
    item["sys"]["updatedAt"] = f"2026-11-2{revision}T10:00:00.000Z"
    return item


def _renamed(item_id: str, new_id: str) -> dict[str, Any]:
    item = copy.deepcopy(demo_items()[item_id])
    item["sys"]["id"] = new_id
    return item


def _link(entry_id: str, kind: str = "Entry") -> dict[str, Any]:
    return {"sys": {"type": "Link", "linkType": kind, "id": entry_id}}


def _settings(entry_id: str, kill_switch: bool, updated: str) -> dict[str, Any]:
    return {
        "sys": {
            "type": "Entry",
            "id": entry_id,
            "revision": 1,
            "updatedAt": updated,
            "contentType": {"sys": {"type": "Link", "linkType": "ContentType", "id": "mbSettings"}},
        },
        "fields": {"killSwitch": {"en-US": kill_switch}, "defaultLocale": {"en-US": "de-DE"}},
    }


def _pool() -> list[Entity]:
    """Every version of every entity a step may publish."""
    items = list(demo_items().values())
    items += [
        _edited("var-hero-cart", 1, priority="high"),
        _edited("var-hero-cart", 2, style={"color": "red"}, priority=9),
        _edited("var-reco-accessories", 1, conditions={"$and": "oops"}),
        _edited("var-hero-video", 1, audiences=[_link("aud-missing")]),
        _edited("var-cta-headline-b", 1, weight=0.9),
        _edited("aud-video-lovers", 1, segments="not-a-list"),
        _edited("aud-runners", 2, personas=["runner", "trail"]),
        _edited("exp-hero-headline-test", 1, status="stopped"),
        _edited("exp-hero-headline-test", 2, coverage=3),
        _edited("hero-cart", 1, headline={"en-US": "Back again", "de-DE": "Wieder da"}),
        _edited("hero-default", 1, image=_link("asset-hero-video", "Asset")),
        _edited("slot-home-hero", 1, variants=[_link("var-hero-video"), _link("var-nope")]),
        _edited("slot-home-hero", 2, key="home.cta"),
        _edited("slot-home-tip", 1, baseline=_link("tip-missing")),
        _edited("tpl-home", 1, slots=[_link("slot-home-cta"), _link("slot-home-hero")]),
        _edited("tpl-home", 2, sequencing="random"),
        _edited("asset-hero-cart", 1, title={"en-US": "Cart", "de-DE": "Warenkorb"}),
        _renamed("slot-home-tip", "slot-home-tip-twin"),
        _renamed("tpl-home", "tpl-home-twin"),
        _settings("settings-a", True, "2026-11-01T00:00:00Z"),
        _settings("settings-b", False, "2026-11-02T00:00:00Z"),
    ]
    items += json.loads((REFERENCE / "cda-sync-initial-cfexampleapi.json").read_text())["items"]
    return [normalize_entity(item) for item in items if item["sys"]["type"] in ("Entry", "Asset")]


DEMO = [normalize_entity(item) for item in demo_items().values()]
POOL = _pool()
KEYS = sorted({entity.key for entity in POOL})

step = st.one_of(
    st.lists(st.sampled_from(POOL).map(lambda e: (e.key, e)), min_size=1, max_size=10),
    st.lists(st.sampled_from(KEYS).map(lambda k: (k, None)), min_size=1, max_size=3),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dropped=st.sets(st.sampled_from(KEYS), max_size=8),
    extra=st.lists(st.sampled_from(POOL), max_size=10),
    steps=st.lists(step, min_size=1, max_size=12),
)
def test_incremental_equals_full_compile_after_every_step(
    dropped: set[str], extra: list[Entity], steps: list[list[tuple[str, Entity | None]]]
) -> None:
    """Starting from the demo space with a few entries missing and a few others added."""
    start = [*DEMO, *extra]
    entities = {entity.key: entity for entity in start if entity.key not in dropped}
    builder = LibraryBuilder(StoredContent(1, dict(entities), LOCALES), link_depth=2)
    _check(builder, entities, 1)
    for version, changes in enumerate(steps, 2):
        batch = dict(changes)
        for key, entity in batch.items():
            if entity is None:
                entities.pop(key, None)
            else:
                entities[key] = entity
        builder.apply(version, batch)
        _check(builder, entities, version)


def test_a_full_read_is_diffed_not_recompiled() -> None:
    demo = [normalize_entity(item) for item in demo_items().values()]
    entities = {entity.key: entity for entity in demo}
    builder = LibraryBuilder(StoredContent(1, dict(entities), LOCALES), link_depth=2)
    before = builder.library
    assert before is not None
    edited = normalize_entity(_edited("hero-cart", 1, headline="Back again"))
    entities[edited.key] = edited
    del entities["Entry:tip-runner"]
    changes = builder.diff(entities)
    assert changes == {edited.key: edited, "Entry:tip-runner": None}
    after = builder.apply(2, changes)
    assert after.templates["home"].slots[0] is before.templates["home"].slots[0]  # shared
    _check(builder, entities, 2)


def test_a_change_recompiles_only_what_links_it() -> None:
    entities = {e.key: e for e in DEMO}
    builder = LibraryBuilder(StoredContent(1, dict(entities), LOCALES), link_depth=2)
    before = builder.library
    assert before is not None
    content = normalize_entity(_edited("hero-cart", 1, headline="Back again"))
    variant = normalize_entity(_edited("var-hero-cart", 2, priority=9))
    after_content = builder.apply(2, {content.key: content})
    assert builder.recompiled == 1  # the variant linking the entry (unchanged: nothing further)
    after_variant = builder.apply(3, {variant.key: variant})
    assert builder.recompiled == 3  # the variant, its slot, its template
    assert after_content.templates is before.templates
    assert after_variant.templates["home"] is not before.templates["home"]
    assert after_variant.slots["home.cta"] is before.slots["home.cta"]


def test_renders_that_read_nothing_changed_are_carried_over() -> None:
    entities = {e.key: e for e in (normalize_entity(i) for i in demo_items().values())}
    builder = LibraryBuilder(StoredContent(1, dict(entities), LOCALES), link_depth=2)
    before = builder.library
    assert before is not None
    tip = before.render("tip-default", None, "en-US")
    hero = before.render("hero-cart", None, "en-US")
    edited = normalize_entity(_edited("asset-hero-cart", 1, title="Cart"))
    after = builder.apply(2, {edited.key: edited})
    assert after.render("tip-default", None, "en-US") is tip
    rerendered = after.render("hero-cart", None, "en-US")
    assert rerendered is not None
    assert hero is not None
    assert b'"title":"Cart"' in orjson.dumps(rerendered.entry)
    assert b'"title":"Cart"' not in orjson.dumps(hero.entry)


async def test_the_generation_the_sync_validated_is_adopted_not_compiled_again(
    redis: Redis, keys: Keys
) -> None:
    store = ContentStore(redis, keys)
    holder = LibraryHolder(store, link_depth=2)
    validated: list[Library] = []

    def validate(content: StoredContent) -> Library:
        validated.append(holder.prepare(content))
        return validated[-1]

    with FakeContentful(space_id="demo", pages=[list(demo_items().values())]) as fake:
        await SyncService(source_for(fake), store, validate=validate).run()
    assert await holder.refresh()
    library = holder.library
    assert library is not None
    assert library.templates["home"] is validated[0].templates["home"]  # not compiled again
    content = await store.load()
    full = compile_library(content, link_depth=2)
    assert library.version == content.version
    assert _plain(library.templates) == _plain(full.templates)
    assert _plain(library.issues) == _plain(full.issues)


async def test_a_replica_behind_catches_up_from_the_written_index_without_a_full_read(
    redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ContentStore(redis, keys)
    with FakeContentful(space_id="demo", pages=[list(demo_items().values())]) as fake:
        await SyncService(source_for(fake), store).run()
    holder = LibraryHolder(store, link_depth=2)
    assert await holder.refresh()
    edited = normalize_entity(_edited("hero-cart", 1, headline="Back again"))
    await store.write([ContentWrite.upsert(edited)])  # two writes whose messages were missed
    await store.write([ContentWrite.removal("Entry:tip-runner")])

    async def no_full_read() -> StoredContent:
        raise AssertionError("a full read")

    monkeypatch.setattr(store, "load", no_full_read)
    assert await holder.refresh()
    library = holder.library
    assert library is not None
    assert library.version == await store.version()
    rendered = library.render("hero-cart", None, "en-US")
    assert rendered is not None
    assert b"Back again" in orjson.dumps(rendered.entry)
    assert "tip-runner" not in [v.entry_id for s in library.slots.values() for v in s.variants]


async def test_an_install_between_makes_the_replica_read_everything(
    redis: Redis, keys: Keys
) -> None:
    store = ContentStore(redis, keys)
    items = list(demo_items().values())
    with FakeContentful(space_id="demo", pages=[items]) as fake:
        await SyncService(source_for(fake), store).run()
        holder = LibraryHolder(store, link_depth=2)
        assert await holder.refresh()
        fake.publish(_edited("hero-cart", 1, headline="From the sync"))
        await SyncService(source_for(fake), store).run(full=True)
    assert await holder.refresh()
    library = holder.library
    assert library is not None
    rendered = library.render("hero-cart", None, "en-US")
    assert rendered is not None
    assert b"From the sync" in orjson.dumps(rendered.entry)
    full = compile_library(await store.load(), link_depth=2)
    assert _plain(library.templates) == _plain(full.templates)


def _check(builder: LibraryBuilder, entities: dict[str, Entity], version: int) -> None:
    assert list(builder.entities) == list(entities)
    incremental = builder.library
    assert incremental is not None
    full = compile_library(StoredContent(version, dict(entities), LOCALES), link_depth=2)
    assert incremental.version == full.version
    assert _plain(incremental.templates) == _plain(full.templates)
    assert _plain(incremental.slots) == _plain(full.slots)
    assert _plain(incremental.issues) == _plain(full.issues)
    assert (incremental.kill_switch, incremental.default_locale, incremental.locales) == (
        full.kill_switch,
        full.default_locale,
        full.locales,
    )
    assert _renders(incremental, full) == _renders(full, full)


def _renders(library: Library, shape: Library) -> dict[tuple[str, str, str], bytes | None]:
    """Every entry a slot of `shape` can answer, rendered by `library`, per locale."""
    found: dict[tuple[str, str, str], bytes | None] = {}
    for slot in shape.slots.values():
        answers = [(slot.baseline_id, None), *((v.entry_id, v) for v in slot.variants)]
        for entry_id, variant in answers:
            for locale in sorted(shape.locales):
                rendered = library.render(entry_id, variant, locale)
                key = (entry_id, variant.id if variant else "", locale)
                found[key] = None if rendered is None else orjson.dumps(rendered)
    return found


def _plain(value: Any) -> Any:
    """A comparable copy: compiled conditions by their JSON (their test is a closure)."""
    if isinstance(value, Condition):
        return ("condition", json.dumps(value.spec, sort_keys=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (type(value).__name__, tuple(_plain(getattr(value, f.name)) for f in fields))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, frozenset | set):
        return frozenset(_plain(v) for v in value)
    return value
