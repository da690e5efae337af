"""Bandit experiments (`mode: bandit`): Thompson weights, their schedule in Redis, the replicas'
copy, sticky arms while the weights move, and the results (allocation, P(best), regret, SRM).

Statistics are checked against known answers: the exact two-arm chance to beat, SciPy's
numerical integral of P(best) for three arms, a regret worked out by hand, SciPy's chi-square.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis
from rich.console import Console
from scipy import integrate, stats

from assembly import store
from assembly.config import DecisionSettings
from assembly.decisions import state as decision_state
from assembly.decisions.rules import DecisionEnv, decide
from assembly.decisions.state import Assignment, DecisionState
from assembly.decisions.visitor import build_visitor
from assembly.experiments.allocation import (
    Allocation,
    Allocations,
    AllocationStore,
)
from assembly.experiments.bandit import (
    ArmData,
    chance_to_be_best,
    expected_visitors,
    regret,
    thompson_weights,
    with_floor,
)
from assembly.experiments.bandit_results import BanditRecord
from assembly.experiments.bandit_tasks import AllocationWatcher, update_bandits
from assembly.experiments.results import results_document, results_table
from assembly.experiments.stats import chance_to_beat
from assembly.ports import Profile
from assembly.schemas import AssembleRequest
from assembly.store import record_conversion
from assembly.targeting.bucketing import get_bucket_ranges
from core.redis import Keys
from integration.library import Library, compile_library
from integration.model import Slot
from integration.normalize import normalize_items
from integration.store import StoredContent
from tests.assembly.arms import EXPERIMENT, SLOT, arm_item, experiment_item, slot_item
from tests.assembly.support import (
    ADMIN,
    assemble,
    decision_app,
    logged,
    replayed,
    runtime,
    settle,
)
from tests.support.app import by_slot
from tests.support.demo import demo_items, publish
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ARMS = ("control", "cta-b", "cta-c")
SETTINGS = DecisionSettings(_env_file=None, bandit_min_exploration=0.05)
ORDER = {"type": "track", "event": "Order Completed"}


def build(mode: str | None = "bandit", **fields: Any) -> Library:
    content = demo_items()
    extra: dict[str, Any] = {} if mode is None else {"mode": mode}
    experiment = experiment_item(coverage=1.0, **extra, **fields)
    experiment["fields"].pop("controlWeight")  # no weights at all: the equal split
    items = [
        experiment,
        slot_item("cta-b", "cta-c"),
        arm_item("cta-b", None),
        arm_item("cta-c", None),
    ]
    for item in items:
        content[item["sys"]["id"]] = item
    entities = {e.key: e for e in normalize_items(list(content.values())).upserts}
    return compile_library(StoredContent(version=7, entities=entities))


def slot_of(library: Library) -> Slot:
    return library.slots[SLOT]


def decide_for(slot: Slot, user: str, env: DecisionEnv) -> str | None:
    request = AssembleRequest.model_validate({"template": "home", "user": {"id": user}})
    decision = decide(slot, build_visitor(request, Profile()), NOW, None, env)
    if decision.source != "experiment" or decision.experiment is None:
        return None
    label: str = decision.experiment["variant"]
    return label


def sticky_state(user: str, label: str) -> DecisionState:
    """The decision state of a visitor already assigned `label` (as the writer stores it)."""
    arm = ARMS.index(label)
    row = {f"a:{EXPERIMENT}".encode(): Assignment(arm, label, "Order Completed", 1.0).encode()}
    return DecisionState((row,), key=f"mbtest:{{v:u:{user}}}:decisions")


def allocation(weights: tuple[float, ...], version: int = 1) -> Allocation:
    return Allocation(version, NOW.timestamp(), ARMS, weights)


# ---------------------------------------------------------------- Thompson sampling


class TestThompsonWeights:
    def test_two_arms_match_the_exact_chance_to_beat(self) -> None:
        arms = [ArmData("control", 400, 40), ArmData("b", 400, 52)]
        exact = chance_to_beat(40, 400, 52, 400)
        assert exact is not None
        best = chance_to_be_best(arms, seed=7)
        assert best[1] == pytest.approx(exact, abs=0.01)
        assert sum(best) == pytest.approx(1.0)

    def test_three_arms_match_the_numerical_integral(self) -> None:
        data = [(300, 30), (300, 36), (300, 27)]
        posts = [stats.beta(1 + c, 1 + n - c) for n, c in data]

        def p_best(k: int) -> float:
            others = [p for i, p in enumerate(posts) if i != k]

            def density(x: float) -> float:
                return float(posts[k].pdf(x) * math.prod(o.cdf(x) for o in others))

            value, _ = integrate.quad(density, 0, 1, limit=200)
            return float(value)

        exact = [p_best(k) for k in range(3)]
        estimated = chance_to_be_best([ArmData(str(i), n, c) for i, (n, c) in enumerate(data)], 3)
        assert estimated == pytest.approx(exact, abs=0.012)

    def test_the_same_seed_draws_the_same(self) -> None:
        arms = [ArmData("a", 50, 5), ArmData("b", 50, 7), ArmData("c", 50, 6)]
        assert chance_to_be_best(arms, 11) == chance_to_be_best(arms, 11)
        assert chance_to_be_best(arms, 11) != chance_to_be_best(arms, 12)

    def test_no_data_is_an_even_chance(self) -> None:
        best = chance_to_be_best([ArmData(x, 0, 0) for x in ARMS], 5)
        assert best == pytest.approx([1 / 3] * 3, abs=0.02)

    def test_weights_keep_the_exploration_floor_and_sum_to_one(self) -> None:
        arms = [ArmData("a", 5000, 100), ArmData("b", 5000, 600), ArmData("c", 5000, 150)]
        weights, best = thompson_weights(arms, 0.05, seed=1)
        assert best[1] > 0.999
        assert weights == pytest.approx([0.05, 0.9, 0.05])
        assert sum(weights) == pytest.approx(1.0)


class TestFloor:
    def test_arms_below_the_floor_are_raised_and_the_rest_scaled(self) -> None:
        assert with_floor([0.999, 0.001, 0.0], 0.05) == pytest.approx([0.9, 0.05, 0.05])
        # 0.6 and 0.36 keep their ratio in the 0.95 left once 0.04 is raised to 0.05.
        assert with_floor([0.6, 0.36, 0.04], 0.05) == pytest.approx(
            [0.6 * 0.95 / 0.96, 0.36 * 0.95 / 0.96, 0.05]
        )

    def test_raising_one_arm_can_push_another_under_the_floor(self) -> None:
        weights = with_floor([0.9, 0.06, 0.04, 0.0], 0.05)
        assert min(weights) >= 0.05 - 1e-12
        assert sum(weights) == pytest.approx(1.0)

    def test_a_floor_that_cannot_be_met_gives_the_equal_split(self) -> None:
        assert with_floor([0.7, 0.2, 0.1], 0.4) == pytest.approx([1 / 3] * 3)

    def test_shares_above_the_floor_are_left_alone(self) -> None:
        assert with_floor([0.5, 0.3, 0.2], 0.05) == pytest.approx([0.5, 0.3, 0.2])


# ---------------------------------------------------------------- results statistics


def test_regret_is_the_visitors_times_the_gap_in_posterior_means() -> None:
    arms = [ArmData("control", 100, 10), ArmData("b", 100, 20), ArmData("c", 50, 20)]
    means = [11 / 102, 21 / 102, 21 / 52]
    expected = 100 * (means[2] - means[0]) + 100 * (means[2] - means[1])
    found = regret(arms)
    assert found.best == "c"
    assert found.conversions == pytest.approx(expected)
    assert found.per_visitor == pytest.approx(expected / 250)


def periods_of_traffic(seed: int) -> tuple[list[int], list[tuple[int, tuple[float, ...]]]]:
    """Visitors drawn per arm over three allocations, as a correct split would send them."""
    rng = np.random.default_rng(seed)
    periods: list[tuple[int, tuple[float, ...]]] = [
        (1000, (1 / 3, 1 / 3, 1 / 3)),
        (1500, (0.2, 0.6, 0.2)),
        (2500, (0.05, 0.9, 0.05)),
    ]
    observed = np.zeros(3, dtype=np.int64)
    for visitors, weights in periods:
        observed += rng.multinomial(visitors, weights)
    return [int(x) for x in observed], periods


def record_after(periods: list[tuple[int, tuple[float, ...]]]) -> BanditRecord:
    """The stored allocation after those periods: the tally of the ones before the last."""
    expected = dict.fromkeys(ARMS, 0.0)
    counted = 0
    for visitors, weights in periods[:-1]:
        for label, w in zip(ARMS, weights, strict=True):
            expected[label] += visitors * w
        counted += visitors
    last = periods[-1][1]
    return BanditRecord(Allocation(3, NOW.timestamp(), ARMS, last, (), expected, counted))


def counts_of(visitors: list[int]) -> store.TestCounts:
    return store.TestCounts(EXPERIMENT, None, dict(zip(ARMS, visitors, strict=True)), {}, {})


META = decision_state.TestMeta("experiment", ARMS, (1 / 3, 1 / 3, 1 / 3), "Order Completed")


class TestSrmWithChangingWeights:
    def test_expected_visitors_sum_the_periods(self) -> None:
        found = expected_visitors({"a": 100.0, "b": 300.0}, 400, {"a": 0.1, "b": 0.9}, 600, "ab")
        assert found == pytest.approx([120.0, 480.0])

    @pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
    def test_a_correct_moving_split_is_no_mismatch(self, seed: int) -> None:
        observed, periods = periods_of_traffic(seed)
        record = record_after(periods)
        document = results_document(EXPERIMENT, counts_of(observed), META, None, SETTINGS, record)
        srm = document["srm"]
        expected = [sum(n * w[i] for n, w in periods) for i in range(3)]
        assert srm["expected"] == pytest.approx(expected)
        reference = stats.chisquare(observed, f_exp=expected)
        assert srm["pValue"] == pytest.approx(reference.pvalue)
        assert not srm["mismatch"]
        # The same counts against the last weights alone: the false alarm this check avoids.
        naive = results_document(EXPERIMENT, counts_of(observed), META, None, SETTINGS)
        assert naive["srm"]["mismatch"]

    def test_a_broken_split_is_still_a_mismatch(self) -> None:
        observed, periods = periods_of_traffic(9)
        shifted = [observed[0] + 150, observed[1] - 300, observed[2] + 150]
        document = results_document(
            EXPERIMENT, counts_of(shifted), META, None, SETTINGS, record_after(periods)
        )
        assert document["srm"]["mismatch"]
        assert document["srm"]["pValue"] < SETTINGS.srm_threshold


def test_the_terminal_table_shows_the_allocation_over_time_and_the_regret() -> None:
    observed, periods = periods_of_traffic(3)
    record = record_after(periods)
    history = [
        {
            "version": v,
            "at": NOW.timestamp() + 300 * v,
            "weights": dict(zip(ARMS, w, strict=True)),
            "visitors": n,
        }
        for v, (n, w) in enumerate(periods, start=1)
    ]
    record = BanditRecord(record.allocation, history)
    counts = store.TestCounts(
        EXPERIMENT,
        None,
        dict(zip(ARMS, observed, strict=True)),
        {},
        dict(zip(ARMS, (40, 400, 60), strict=True)),
    )
    document = results_document(EXPERIMENT, counts, META, None, SETTINGS, record)
    assert [a["version"] for a in document["bandit"]["allocations"]] == [1, 2, 3]
    console = Console(record=True, width=160)
    console.print(results_table(document))
    text = console.export_text()
    assert "bandit allocation over time" in text
    assert "90.0%" in text  # the last allocation's share of cta-b
    lost = document["bandit"]["regret"]["conversions"]
    assert f"regret: {lost:.1f} conversions lost against cta-b" in text


# ---------------------------------------------------------------- content model


class TestMode:
    def test_bandit_mode_is_read(self) -> None:
        library = build("bandit")
        assert slot_of(library).arms[EXPERIMENT].experiment.mode == "bandit"
        assert not library.issues

    def test_no_mode_is_ab(self) -> None:
        library = build(None)
        assert slot_of(library).arms[EXPERIMENT].experiment.mode == "ab"
        assert not library.issues

    def test_an_unknown_mode_runs_as_ab_and_is_reported(self) -> None:
        library = build("thompson")
        experiment = slot_of(library).arms[EXPERIMENT].experiment
        assert experiment.mode == "ab"
        (issue,) = library.issues
        assert issue.to_json() == {
            "id": "exp-hero-headline-test",
            "contentType": "mbExperiment",
            "problem": f"experiment {EXPERIMENT}: mode 'thompson' is not 'ab', 'bandit' or "
            "'contextual'; it runs as 'ab'",
        }


# ---------------------------------------------------------------- weights in memory


class TestAllocations:
    def test_a_bandit_buckets_with_the_stored_weights(self) -> None:
        arms = slot_of(build()).arms[EXPERIMENT]
        moved = Allocations({EXPERIMENT: allocation((0.1, 0.7, 0.2))}).arms(arms)
        assert moved.weights == (0.1, 0.7, 0.2)
        assert list(moved.ranges) == get_bucket_ranges(3, 1.0, [0.1, 0.7, 0.2])
        assert moved.variants == arms.variants

    def test_an_ab_test_keeps_its_weights(self) -> None:
        arms = slot_of(build("ab")).arms[EXPERIMENT]
        assert Allocations({EXPERIMENT: allocation((0.1, 0.7, 0.2))}).arms(arms) is arms

    def test_weights_for_other_arms_are_not_used(self) -> None:
        arms = slot_of(build()).arms[EXPERIMENT]
        other = Allocation(1, 0.0, ("control", "cta-b"), (0.2, 0.8))
        assert Allocations({EXPERIMENT: other}).arms(arms) is arms

    def test_the_reweighted_arms_are_built_once(self) -> None:
        arms = slot_of(build()).arms[EXPERIMENT]
        allocations = Allocations({EXPERIMENT: allocation((0.1, 0.7, 0.2))})
        assert allocations.arms(arms) is allocations.arms(arms)


class TestStickiness:
    USERS = [f"visitor-{i}" for i in range(1500)]

    def test_assigned_visitors_keep_their_arm_and_new_ones_follow_the_weights(self) -> None:
        slot = slot_of(build())
        before = {u: decide_for(slot, u, DecisionEnv(state=DecisionState())) for u in self.USERS}
        shares = Counter(before.values())
        assert all(abs(shares[x] / len(self.USERS) - 1 / 3) < 0.05 for x in ARMS)

        weights = DecisionEnv(allocations=Allocations({EXPERIMENT: allocation((0.05, 0.9, 0.05))}))
        for user, label in before.items():
            assert label is not None
            env = DecisionEnv(state=sticky_state(user, label), allocations=weights.allocations)
            assert decide_for(slot, user, env) == label
        newcomers = [f"newcomer-{i}" for i in range(1500)]
        after = Counter(decide_for(slot, u, weights) for u in newcomers)
        assert after["cta-b"] / len(newcomers) == pytest.approx(0.9, abs=0.03)
        assert after["control"] / len(newcomers) == pytest.approx(0.05, abs=0.02)


# ---------------------------------------------------------------- the schedule in Redis


async def seed_counts(redis: Redis, keys: Keys, rows: dict[str, tuple[int, int]]) -> None:
    name = f"{keys.prefix}:decisions:test:{EXPERIMENT}"
    for label, (visitors, conversions) in rows.items():
        await redis.hset(name, f"arm:{label}:visitors", visitors)
        await redis.hset(name, f"arm:{label}:conversions", conversions)


class TestSchedule:
    async def test_an_update_stores_weights_history_and_a_new_version(
        self, redis: Redis, keys: Keys
    ) -> None:
        library = build()
        await seed_counts(
            redis, keys, {"control": (900, 45), "cta-b": (900, 90), "cta-c": (900, 30)}
        )
        (stored,) = await update_bandits(redis, keys, SETTINGS, library, NOW.timestamp())
        assert stored.version == 1
        assert stored.labels == ARMS
        assert stored.weights == pytest.approx((0.05, 0.9, 0.05), abs=1e-6)
        assert stored.expected == pytest.approx({x: 900.0 for x in ARMS})  # the equal split
        assert stored.counted == 2700
        store = AllocationStore(redis, keys)
        assert await store.get(EXPERIMENT) == stored
        assert await store.version() == 1
        (entry,) = await store.history(EXPERIMENT)
        assert entry["visitors"] == 2700
        assert entry["weights"] == pytest.approx(dict(zip(ARMS, stored.weights, strict=True)))

    async def test_a_second_replica_does_not_update_again_within_the_period(
        self, redis: Redis, keys: Keys
    ) -> None:
        library = build()
        start = NOW.timestamp()
        assert await update_bandits(redis, keys, SETTINGS, library, start)
        assert not await update_bandits(redis, keys, SETTINGS, library, start + 10)
        later = start + SETTINGS.bandit_update_seconds
        (second,) = await update_bandits(redis, keys, SETTINGS, library, later)
        assert second.version == 2
        assert len(await AllocationStore(redis, keys).history(EXPERIMENT)) == 2

    async def test_the_tally_follows_the_weights_of_each_period(
        self, redis: Redis, keys: Keys
    ) -> None:
        library = build()
        await seed_counts(redis, keys, {"control": (100, 1), "cta-b": (100, 30), "cta-c": (100, 1)})
        (first,) = await update_bandits(redis, keys, SETTINGS, library, NOW.timestamp())
        await seed_counts(redis, keys, {"control": (130, 1), "cta-b": (520, 90), "cta-c": (150, 2)})
        (second,) = await update_bandits(redis, keys, SETTINGS, library, NOW.timestamp() + 600)
        weights = first.by_label()
        assert second.counted == 800
        assert second.expected == pytest.approx({x: 100 + 500 * weights[x] for x in ARMS})

    async def test_ab_tests_and_stopped_bandits_are_left_alone(
        self, redis: Redis, keys: Keys
    ) -> None:
        now = NOW.timestamp()
        assert not await update_bandits(redis, keys, SETTINGS, build("ab"), now)
        assert not await update_bandits(redis, keys, SETTINGS, build(status="stopped"), now)
        assert await AllocationStore(redis, keys).version() == 0

    async def test_replicas_load_new_weights_only_when_the_version_moves(
        self, redis: Redis, keys: Keys
    ) -> None:
        store = AllocationStore(redis, keys)
        replicas = [AllocationWatcher(store, 5.0), AllocationWatcher(store, 5.0)]
        for replica in replicas:
            await replica.refresh()
            assert replica.allocations.by_key == {}
        await seed_counts(redis, keys, {"control": (500, 5), "cta-b": (500, 60), "cta-c": (500, 5)})
        (stored,) = await update_bandits(redis, keys, SETTINGS, build(), NOW.timestamp())
        for replica in replicas:
            assert await replica.refresh()
            assert replica.allocations.by_key == {EXPERIMENT: stored}
            assert not await replica.refresh()  # one GET, nothing reloaded

    async def test_a_damaged_record_is_ignored(self, redis: Redis, keys: Keys) -> None:
        await redis.hset(keys.bandit_weights, EXPERIMENT, b"{not json")
        await redis.incr(keys.bandit_version)
        watcher = AllocationWatcher(AllocationStore(redis, keys), 5.0)
        assert await watcher.refresh()
        assert watcher.allocations.by_key == {}


# ---------------------------------------------------------------- the real app


def bandit_items() -> list[dict[str, Any]]:
    experiment = experiment_item(coverage=1.0, mode="bandit")
    experiment["fields"].pop("controlWeight")
    return [
        experiment,
        slot_item("cta-b", "cta-c"),
        arm_item("cta-b", None),
        arm_item("cta-c", None),
    ]


async def shown(client: Any, user: str, session: str = "s1") -> tuple[str, str]:
    """The arm label the answer shows on the slot, and why."""
    slot = (await assemble(client, user={"id": user}, sessionId=session))[SLOT]
    assert slot["source"] == "experiment", slot["reason"]
    label: str = slot["experiment"]["variant"]
    return label, slot["reason"]


class TestOnTheApp:
    async def test_weights_move_new_visitors_and_leave_assigned_ones(
        self, redis: Redis, redis_server: RedisServer, keys: Keys
    ) -> None:
        async with decision_app(redis_server.url, admin=True) as (app, client):
            await publish(app, *bandit_items())
            early = [f"early-{i}" for i in range(240)]
            first = {u: (await shown(client, u))[0] for u in early}
            assert set(first.values()) == set(ARMS)
            await settle(app)
            for user, label in first.items():  # cta-c converts far better
                if label == "cta-c" or (label == "control" and user.endswith("0")):
                    await record_conversion(redis, keys, {**ORDER, "userId": user})

            library = runtime(app).libraries.library
            assert library is not None
            (stored,) = await update_bandits(redis, keys, SETTINGS, library, NOW.timestamp())
            assert stored.by_label()["cta-c"] == pytest.approx(0.9, abs=0.01)
            assert await runtime(app).bandits.refresh()

            for user, label in first.items():
                again, why = await shown(client, user, session="s2")
                assert again == label
                assert why.endswith("(sticky)")
            fresh = Counter([(await shown(client, f"late-{i}"))[0] for i in range(300)])
            assert fresh["cta-c"] / 300 == pytest.approx(0.9, abs=0.06)

            await settle(app)
            response = await client.get(f"/admin/experiments/{EXPERIMENT}/results", headers=ADMIN)
            assert response.status_code == 200, response.text
            document = response.json()
        assert document["mode"] == "bandit"
        bandit = document["bandit"]
        assert bandit["version"] == 1
        assert bandit["weights"] == pytest.approx(stored.by_label())
        assert [a["version"] for a in bandit["allocations"]] == [1]
        assert bandit["chanceToBeBest"]["cta-c"] > 0.99
        assert bandit["regret"]["bestArm"] == "cta-c"
        assert bandit["regret"]["conversions"] > 0
        rows = {row["variant"]: row for row in document["arms"]}
        assert (
            rows["cta-c"]["exposures"]
            == sum(1 for x in first.values() if x == "cta-c") + fresh["cta-c"]
        )
        assert not document["srm"]["mismatch"]

    async def test_replay_assigns_with_the_weights_in_force_when_the_visitor_came(
        self, redis: Redis, redis_server: RedisServer, keys: Keys
    ) -> None:
        allocations = AllocationStore(redis, keys)
        async with decision_app(redis_server.url, admin=True) as (app, client):
            await publish(app, *bandit_items())
            await allocations.put(EXPERIMENT, allocation((0.05, 0.05, 0.9)))
            assert await runtime(app).bandits.refresh()
            shown_then = {}
            for i in range(40):
                body = {"template": "home", "user": {"id": f"new-{i}"}, "sessionId": "s1"}
                answer = (await client.post("/v1/assemble", json=body)).json()
                shown_then[answer["decisionId"]] = by_slot(answer)[SLOT]["experiment"]["variant"]
            assert Counter(shown_then.values())["cta-c"] >= 30
            await allocations.put(EXPERIMENT, allocation((0.9, 0.05, 0.05), version=2))
            assert await runtime(app).bandits.refresh()
            await logged(app)
            for decision_id, label in shown_then.items():
                result = await replayed(client, decision_id)
                (row,) = [r for r in result["slots"] if r["slot"] == SLOT]
                assert row["same"], row
                assert row["replayed"]["experiment"]["variant"] == label
                assert result["learning"]["bandits"][EXPERIMENT]["version"] == 1

    async def test_the_schedule_updates_and_every_replica_loads(
        self, redis: Redis, redis_server: RedisServer, keys: Keys
    ) -> None:
        fast: dict[str, Any] = {"bandit_update_seconds": 0.2, "bandit_poll_seconds": 0.05}
        async with (
            decision_app(redis_server.url, **fast) as (app, client),
            decision_app(redis_server.url, **fast) as (replica, _),
        ):
            await publish(app, *bandit_items())
            await publish(replica, *bandit_items())
            await shown(client, "someone")
            for running in (app, replica):
                loaded = await eventually(partial(_allocations, running), _has_experiment)
                assert loaded[EXPERIMENT].labels == ARMS
        history = await AllocationStore(redis, keys).history(EXPERIMENT)
        versions = [entry["version"] for entry in history]
        assert versions == list(range(1, len(versions) + 1))  # one writer: no version twice


async def _allocations(app: Any) -> dict[str, Allocation]:
    return dict(runtime(app).engine.bandits.by_key)


def _has_experiment(found: dict[str, Allocation]) -> bool:
    return EXPERIMENT in found
