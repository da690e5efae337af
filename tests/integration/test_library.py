"""The library compiler: one bad entry never breaks the rest; links, cycles, locale fallback."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from integration.library import Library, compile_library
from integration.normalize import normalize_items
from integration.schemas import Entity, Locale
from integration.store import StoredContent
from tests.support.demo import demo_items, with_fields

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "contentful"
LOCALES = [
    Locale("en-US", default=True),
    Locale("de-DE", fallback_code="en-US"),
    Locale("de-AT", fallback_code="de-DE"),
]


def build(
    items: list[dict[str, Any]], *, depth: int = 2, locales: list[Locale] = LOCALES
) -> Library:
    entities = {e.key: e for e in normalize_items(items).upserts}
    return compile_library(
        StoredContent(version=7, entities=entities, locales=locales), link_depth=depth
    )


def demo_with(*replacements: dict[str, Any], drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    items = demo_items()
    for item in replacements:
        items[item["sys"]["id"]] = item
    return [item for key, item in items.items() if key not in drop]


def entry(entry_id: str, content_type: str = "page", **fields: Any) -> dict[str, Any]:
    return {
        "sys": {
            "type": "Entry",
            "id": entry_id,
            "revision": 1,
            "updatedAt": "2026-01-01T00:00:00Z",
            "contentType": {"sys": {"type": "Link", "linkType": "ContentType", "id": content_type}},
        },
        "fields": {k: v if _localized(v) else {"en-US": v} for k, v in fields.items()},
    }


def _localized(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and set(value) <= {x.code for x in LOCALES} | {"fr-FR"}
    )


def link(entry_id: str, kind: str = "Entry") -> dict[str, Any]:
    return {"sys": {"type": "Link", "linkType": kind, "id": entry_id}}


def problems(library: Library) -> dict[str, str]:
    return {issue.entity_id: issue.problem for issue in library.issues}


def test_demo_space_compiles_without_issues() -> None:
    library = build(list(demo_items().values()))
    assert library.issues == ()
    assert set(library.templates) == {"home"}
    assert len(library.templates["home"].slots) == 6
    assert library.version == 7


def test_cfexampleapi_is_not_our_model_but_loads_cleanly() -> None:
    items = json.loads((REFERENCE / "cda-sync-initial-cfexampleapi.json").read_text())["items"]
    library = build(items)
    assert library.templates == {}
    assert library.issues == ()


def test_slot_whose_baseline_is_missing_is_skipped_and_reported() -> None:
    library = build(demo_with(drop=("hero-default",)))
    assert "home.hero" not in library.slots
    assert "baseline hero-default" in problems(library)["slot-home-hero"]
    assert library.templates["home"].slots[0].key == "home.cta"
    assert "left out" in problems(library)["tpl-home"]


def test_variant_without_its_entry_is_skipped_and_the_slot_kept() -> None:
    library = build(demo_with(drop=("hero-video",)))
    hero = library.slots["home.hero"]
    assert "hero-video" not in [v.key for v in hero.variants]
    assert "hero-cart" in [v.key for v in hero.variants]
    assert "entry hero-video" in problems(library)["var-hero-video"]


def test_malformed_condition_skips_only_that_variant() -> None:
    library = build(demo_with(with_fields("var-reco-accessories", conditions={"$and": "oops"})))
    assert "not a valid condition" in problems(library)["var-reco-accessories"]
    assert [v.key for v in library.slots["home.recommendation"].variants] == [
        "reco-discount",
        "reco-running",
    ]


def test_variant_linking_a_broken_audience_is_skipped_not_widened() -> None:
    library = build(demo_with(with_fields("aud-video-lovers", segments="not-a-list")))
    reported = problems(library)
    assert "aud-video-lovers" in reported
    assert "var-hero-video" in reported
    assert "hero-video" not in [v.key for v in library.slots["home.hero"].variants]


def test_wrong_field_types_are_reported_with_the_field() -> None:
    library = build(demo_with(with_fields("var-hero-cart", priority="high")))
    assert "'priority'" in problems(library)["var-hero-cart"]


def test_duplicate_slot_keys_keep_one_and_report_the_other() -> None:
    twin = copy.deepcopy(demo_items()["slot-home-tip"])
    twin["sys"]["id"] = "slot-home-tip-twin"
    library = build(demo_with(twin))
    assert "duplicate key 'home.tip'" in problems(library)["slot-home-tip-twin"]


def test_links_resolve_to_depth_and_cycles_stay_links() -> None:
    items = [
        entry("a", title="A", next=link("b"), image=link("img", "Asset")),
        entry("b", title="B", next=link("a")),
        {
            "sys": {"type": "Asset", "id": "img", "revision": 1},
            "fields": {"title": {"en-US": "Image"}, "file": {"en-US": {"url": "//x/img.png"}}},
        },
    ]
    resolver = build(items, depth=5).resolver
    assert resolver is not None
    a = resolver.entry("a", "en-US")
    assert a is not None
    assert a["fields"]["next"]["fields"]["title"] == "B"
    assert a["fields"]["next"]["fields"]["next"] == {"id": "a", "type": "Link", "linkType": "Entry"}
    assert a["fields"]["image"]["fields"]["file"]["url"] == "//x/img.png"
    shallow = build(items, depth=0).resolver
    assert shallow is not None
    assert shallow.entry("a", "en-US")["fields"]["next"]["type"] == "Link"  # type: ignore[index]


def test_missing_link_targets_are_dropped() -> None:
    items = [
        entry("a", related=[link("gone"), link("b")], single=link("gone")),
        entry("b", title="B"),
    ]
    resolver = build(items).resolver
    assert resolver is not None
    fields = resolver.entry("a", "en-US")["fields"]  # type: ignore[index]
    assert [x["id"] for x in fields["related"]] == ["b"]
    assert "single" not in fields


def test_locale_fallback_follows_the_chain() -> None:
    items = [entry("a", title={"en-US": "Hello", "de-DE": "Hallo"}, note={"en-US": "only english"})]
    resolver = build(items).resolver
    assert resolver is not None
    at = resolver.entry("a", "de-AT")
    assert at is not None
    assert at["fields"] == {"title": "Hallo", "note": "only english"}


def test_locale_without_fallback_omits_missing_fields() -> None:
    locales = [Locale("en-US", default=True), Locale("fr-FR")]
    items = [entry("a", title={"en-US": "Hello", "fr-FR": "Bonjour"}, note={"en-US": "x"})]
    resolver = build(items, locales=locales).resolver
    assert resolver is not None
    assert resolver.entry("a", "fr-FR")["fields"] == {"title": "Bonjour"}  # type: ignore[index]


def test_fallback_cycles_are_safe() -> None:
    locales = [
        Locale("en-US", default=True, fallback_code="de-DE"),
        Locale("de-DE", fallback_code="en-US"),
    ]
    items = [entry("a", title={"de-DE": "Hallo"})]
    resolver = build(items, locales=locales).resolver
    assert resolver is not None
    assert resolver.entry("a", "en-US")["fields"] == {"title": "Hallo"}  # type: ignore[index]


def test_rendered_entries_are_cached_per_snapshot() -> None:
    library = build(list(demo_items().values()))
    slot = library.slots["home.hero"]
    first = library.render(slot.baseline_id, None, "en-US")
    assert first is not None
    assert library.render(slot.baseline_id, None, "en-US") is first


def test_entity_round_trips_through_json() -> None:
    entity = normalize_items([entry("a", title="A")]).upserts[0]
    assert Entity.from_json(entity.to_json()) == entity
