"""Memory of the library per entity, measured with tracemalloc (a helper of bench/scale.py).

`python bench/scale_probe.py SPACE.json`, run from a checkout's root (with it on PYTHONPATH), so
that an older checkout is measured by its own code. Prints one JSON line: the space's JSON as
the sync delivered it, the entities decoded as `ContentStore.load` decodes them, what the live
library holds on top (with the incremental builder when the checkout has one), and the renders
of every slot answer in every locale, each in bytes and per entity; then (tracing off) the
time of a full compile and of the compile after one content entry changes: the whole library
again in a checkout without the builder, `LibraryBuilder.apply` with it (median of 5).
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson

from integration.library import Library, compile_library
from integration.normalize import normalize_items
from integration.schemas import Entity, Locale
from integration.store import StoredContent

LOCALES = [Locale("en-US", default=True), Locale("de-DE", fallback_code="en-US")]


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def compiled(content: StoredContent) -> tuple[Library, Any]:
    """The live library and what keeps it (the builder, where the checkout has one)."""
    try:
        from integration.builder import LibraryBuilder  # absent in old checkouts
    except ImportError:
        library = compile_library(content, link_depth=2)
        return library, library
    builder = LibraryBuilder(content, link_depth=2)
    assert builder.library is not None
    return builder.library, builder


def render_all(library: Library) -> int:
    count = 0
    for slot in library.slots.values():
        answers = [(slot.baseline_id, None), *((v.entry_id, v) for v in slot.variants)]
        for entry_id, variant in answers:
            for locale in sorted(library.locales):
                library.render(entry_id, variant, locale)
                count += 1
    return count


def main(path: str) -> None:
    items = orjson.loads(Path(path).read_bytes())
    json_bytes = sum(len(orjson.dumps(item)) for item in items)
    stored = [orjson.dumps(e.to_json()) for e in normalize_items(items).upserts]
    del items
    tracemalloc.start()
    start = traced()
    entities: dict[str, Entity] = {}
    for raw in stored:
        entity = Entity.from_json(orjson.loads(raw))
        entities[entity.key] = entity
    decoded = traced() - start
    library, keeper = compiled(StoredContent(1, entities, LOCALES))
    held = traced() - start - decoded
    renders = render_all(library)
    rendered = traced() - start - decoded - held
    count = len(entities)
    result: dict[str, float] = {
        "entities": count,
        "jsonBytes": json_bytes,
        "decodedBytes": decoded,
        "libraryBytes": held,
        "renderedBytes": rendered,
        "renders": renders,
        "jsonPerEntity": round(json_bytes / count),
        "decodedPerEntity": round(decoded / count),
        "libraryPerEntity": round(held / count),
        "renderedPerEntity": round(rendered / count),
    }
    del keeper
    tracemalloc.stop()
    result |= timings(StoredContent(1, entities, LOCALES))
    print(orjson.dumps(result).decode())


def timings(content: StoredContent) -> dict[str, float]:
    """Milliseconds: a full compile, and the compile one changed content entry costs."""
    full = _median_ms(lambda: compiled(content))
    entry = next(e for e in content.entities.values() if e.content_type == "hero")
    edited = Entity.from_json(entry.to_json() | {"revision": entry.revision + 1})
    library, keeper = compiled(content)
    if keeper is library:  # no builder: the holder recompiled everything from memory
        merged = content.entities | {edited.key: edited}
        change = _median_ms(lambda: compile_library(StoredContent(2, merged, LOCALES)))
    else:
        change = _median_ms(lambda: keeper.apply(2, {edited.key: edited}))
    return {"fullCompileMs": full, "oneChangeMs": change}


def _median_ms(run: Any) -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples) * 1000, 2)


if __name__ == "__main__":
    main(sys.argv[1])
