"""Experiment arms on the real compiler: identity by variant key, list order, GrowthBook's split.

The demo's `hero-headline-test` on `home.cta` gets three arms with unequal weights. Every
assignment is checked against growthbook-python's `GrowthBook.run` with the same variations (in
the slot list's order), weights, seed, coverage, namespace and hash attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from rich.console import Console
from structlog.testing import capture_logs

from assembly import store
from assembly.config import DecisionSettings
from assembly.decisions import state as state
from assembly.decisions.rules import DecisionEnv, decide
from assembly.decisions.state import DecisionState, Exposure, VisitorWrite
from assembly.decisions.visitor import build_visitor
from assembly.experiments.assignment import experiment_meta
from assembly.experiments.results import results_document, results_table
from assembly.experiments.stats import two_sided_p
from assembly.ports import Profile
from assembly.schemas import AssembleRequest
from core.redis import Keys
from integration.library import Library, compile_library
from integration.model import Slot
from integration.normalize import normalize_items
from integration.store import StoredContent
from tests.assembly.arms import (
    EXPERIMENT,
    SLOT,
    WEIGHTS,
    arm_item,
    experiment_item,
    growthbook,
    slot_item,
)
from tests.support.demo import demo_items

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
IDS = [f"visitor-{i}" for i in range(1200)]


def build(*items: dict[str, Any]) -> Library:
    content = demo_items()
    for item in items:
        content[item["sys"]["id"]] = item
    entities = {e.key: e for e in normalize_items(list(content.values())).upserts}
    return compile_library(StoredContent(version=7, entities=entities))


def three_arms(
    order: tuple[str, ...] = ("cta-b", "cta-c", "cta-d"),
    weights: Mapping[str, float | None] | None = None,
    republished: str | None = None,
) -> Library:
    weights = dict(WEIGHTS if weights is None else weights)
    arms = [arm_item(k, weights[k], revision=5 if k == republished else 1) for k in order]
    return build(experiment_item(controlWeight=weights["control"]), slot_item(*order), *arms)


def ours(slot: Slot, user: str) -> str | None:
    """The arm label a fresh visitor gets (None: not in the experiment)."""
    request = AssembleRequest.model_validate({"template": "home", "user": {"id": user}})
    visitor = build_visitor(request, Profile())
    decision = decide(slot, visitor, NOW, None, DecisionEnv(state=DecisionState()))
    if decision.source != "experiment":
        assert decision.reason == f"experiment {EXPERIMENT}: outside coverage"
        return None
    assert decision.experiment is not None
    label: str = decision.experiment["variant"]
    assert decision.reason == f"experiment {EXPERIMENT} arm {label}"
    return label


def assignments(library: Library) -> dict[str, str | None]:
    return {user: ours(library.slots[SLOT], user) for user in IDS}


def expected(order: tuple[str, ...], weights: Mapping[str, float]) -> dict[str, str | None]:
    labels = ["control", *order]
    return {user: growthbook(labels, [weights[k] for k in labels], user) for user in IDS}


def experiment_issues(library: Library) -> list[str]:
    return [i.problem for i in library.issues if i.content_type == "mbExperiment"]


class TestGrowthBookEquivalence:
    def test_assignment_equals_growthbook_and_survives_a_republish(self) -> None:
        before = three_arms()
        assert before.slots[SLOT].arms[EXPERIMENT].labels == ("control", "cta-b", "cta-c", "cta-d")
        want = expected(("cta-b", "cta-c", "cta-d"), WEIGHTS)
        got = assignments(before)
        assert got == want
        assert set(got.values()) == {None, "control", "cta-b", "cta-c", "cta-d"}
        # Republishing an arm made it the most recent: the rule order changes, the arms do not.
        after = three_arms(republished="cta-c")
        assert [v.key for v in after.slots[SLOT].variants][-3:] == ["cta-c", "cta-b", "cta-d"]
        assert after.slots[SLOT].arms[EXPERIMENT].labels == ("control", "cta-b", "cta-c", "cta-d")
        assert assignments(after) == got

    def test_a_reordered_list_is_the_new_arm_order_as_growthbook_sees_it(self) -> None:
        order = ("cta-d", "cta-b", "cta-c")
        library = three_arms(order, republished="cta-b")
        assert library.slots[SLOT].arms[EXPERIMENT].labels == ("control", *order)
        assert assignments(library) == expected(order, WEIGHTS)

    def test_the_results_meta_names_arms_by_key_with_their_shares(self) -> None:
        arms = three_arms(("cta-c", "cta-b", "cta-d")).slots[SLOT].arms[EXPERIMENT]
        meta = experiment_meta(arms)
        assert meta.arms == ("control", "cta-c", "cta-b", "cta-d")
        assert meta.weights == (0.1, 0.3, 0.2, 0.4)


class TestWeights:
    def test_a_sum_of_0_99_is_used_as_given_like_growthbook(self) -> None:
        weights = {**WEIGHTS, "control": 0.09}  # 0.99: inside GrowthBook's tolerance
        library = three_arms(weights=weights)
        assert experiment_issues(library) == []
        assert library.slots[SLOT].arms[EXPERIMENT].weights == (0.09, 0.2, 0.3, 0.4)
        got = assignments(library)
        assert got == expected(("cta-b", "cta-c", "cta-d"), weights)

    def test_a_sum_of_1_3_gets_an_equal_split_and_is_reported(self) -> None:
        weights = {**WEIGHTS, "control": 0.4}  # 1.3
        with capture_logs() as logs:
            library = three_arms(weights=weights)
        arms = library.slots[SLOT].arms[EXPERIMENT]
        assert arms.weights == (0.25, 0.25, 0.25, 0.25)
        assert experiment_meta(arms).weights == (0.25, 0.25, 0.25, 0.25)
        (problem,) = experiment_issues(library)
        assert problem == (
            f"experiment {EXPERIMENT}: weights sum to 1.3 (controlWeight 0.4 + cta-b 0.2 + "
            "cta-c 0.3 + cta-d 0.4), not 1 (0.99 to 1.01); an equal split (1/4 each) is used "
            f"in slot {SLOT}"
        )
        (logged,) = [e for e in logs if e["event"] == "library.experiment_invalid"]
        assert (logged["experiment"], logged["slot"], logged["log_level"]) == (
            EXPERIMENT,
            SLOT,
            "warning",
        )
        # GrowthBook, given the same weights, falls back to the same equal split.
        assert assignments(library) == expected(("cta-b", "cta-c", "cta-d"), weights)

    def test_a_missing_weight_gets_an_equal_split_and_is_reported(self) -> None:
        library = three_arms(weights={**WEIGHTS, "cta-c": None})
        assert library.slots[SLOT].arms[EXPERIMENT].weights == (0.25,) * 4
        (problem,) = experiment_issues(library)
        assert problem.startswith(f"experiment {EXPERIMENT}: no weight for cta-c;")

    def test_no_weights_at_all_is_an_equal_split_without_an_issue(self) -> None:
        library = three_arms(weights=dict.fromkeys(WEIGHTS))
        assert library.slots[SLOT].arms[EXPERIMENT].weights == (0.25,) * 4
        assert experiment_issues(library) == []


class TestWinner:
    @pytest.mark.parametrize(("winner", "served"), [(1, "cta-d"), (2, "cta-b"), (0, None)])
    def test_winner_is_a_position_in_the_slot_list(self, winner: int, served: str | None) -> None:
        order = ("cta-d", "cta-b", "cta-c")
        arms = [arm_item(k, WEIGHTS[k]) for k in order]
        library = build(experiment_item(controlWeight=0.1, winner=winner), slot_item(*order), *arms)
        request = AssembleRequest.model_validate({"template": "home", "user": {"id": "u1"}})
        visitor = build_visitor(request, Profile())
        decision = decide(library.slots[SLOT], visitor, NOW, None, DecisionEnv())
        assert (decision.variant.key if decision.variant else None) == served
        label = served or "control"
        assert decision.reason == f"experiment {EXPERIMENT} decided: winner {label} (arm {winner})"

    def test_a_winner_that_is_no_arm_serves_the_baseline_and_is_reported(self) -> None:
        arms = [arm_item(k, WEIGHTS[k]) for k in ("cta-b", "cta-c", "cta-d")]
        library = build(
            experiment_item(controlWeight=0.1, winner=4),
            slot_item("cta-b", "cta-c", "cta-d"),
            *arms,
        )
        (problem,) = experiment_issues(library)
        assert "winner 4 is no arm" in problem
        request = AssembleRequest.model_validate({"template": "home", "user": {"id": "u1"}})
        decision = decide(
            library.slots[SLOT], build_visitor(request, Profile()), NOW, None, DecisionEnv()
        )
        assert (decision.source, decision.reason) == (
            "baseline",
            f"experiment {EXPERIMENT} decided: winner 4 is no arm",
        )


class TestPositionalCounters:
    """Counters stored by arm position before arms kept their identity move to their key."""

    async def test_they_are_read_by_their_meta_then_moved_before_a_new_meta(
        self, redis: Redis, keys: Keys
    ) -> None:
        name = keys.test_counts(EXPERIMENT)
        old_meta = {
            "kind": "experiment",
            "arms": ["control", "cta-c", "cta-b"],  # the old (rule-sorted) numbering
            "weights": [0.5, 0.25, 0.25],
            "goal": "Order Completed",
        }
        legacy = {"visitors:0": 10, "visitors:1": 7, "visitors:2": 5, "conversions:1": 2}
        mapping: dict[Any, Any] = {"meta": orjson.dumps(old_meta), **legacy}
        await redis.hset(name, mapping=mapping)
        read = await store.read_counts(redis, keys, EXPERIMENT)
        assert read.visitors == {"control": 10, "cta-c": 7, "cta-b": 5}
        assert read.conversions == {"cta-c": 2}
        # A replica records an exposure under the new arm order: the old counts move first.
        arms = three_arms().slots[SLOT].arms[EXPERIMENT]
        write = VisitorWrite("mbtest:{v:u:x}:decisions", "x", None, "s1", NOW.timestamp())
        exposure = Exposure(EXPERIMENT, 1, "cta-b", SLOT, experiment_meta(arms))
        write.exposures.append(("s:s1:x:" + EXPERIMENT, exposure))
        await store.apply_writes(redis, keys, [write], ttl_seconds=60, metas={})
        row: Any = await redis.hgetall(name)
        fields = {k.decode(): v for k, v in row.items() if k != b"meta"}
        assert fields == {
            "arm:control:visitors": b"10",
            "arm:cta-c:visitors": b"7",
            "arm:cta-b:visitors": b"5",
            "arm:cta-c:conversions": b"2",
            "arm:cta-b:sessions": b"1",
        }
        assert orjson.loads(row[b"meta"])["arms"] == ["control", "cta-b", "cta-c", "cta-d"]


class TestResultRows:
    def test_an_arm_no_longer_in_the_slot_is_listed_last_and_kept_out_of_srm(self) -> None:
        meta = state.TestMeta("experiment", ("control", "cta-b"), (0.5, 0.5), "Order Completed")
        counts = store.TestCounts(
            EXPERIMENT,
            meta,
            visitors={"control": 100, "cta-old": 40, "cta-b": 90},
            sessions={"control": 150, "cta-old": 41, "cta-b": 120},
            conversions={"control": 10, "cta-old": 3, "cta-b": 12},
        )
        document = results_document(
            EXPERIMENT, counts, meta, None, DecisionSettings(_env_file=None)
        )
        rows = [(r["arm"], r["variant"], r["weight"], r["exposures"]) for r in document["arms"]]
        assert rows == [
            (0, "control", 0.5, 100),
            (1, "cta-b", 0.5, 90),
            (None, "cta-old", None, 40),
        ]
        assert document["arms"][2]["pValue"] == two_sided_p(10, 100, 3, 40)
        assert document["srm"]["expected"] == [95.0, 95.0]
        console = Console(record=True, width=160)
        console.print(results_table(document))
        text = console.export_text()
        assert "cta-old" in text
        assert "(control)" in text
