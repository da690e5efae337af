"""Contextual bandits (`mode: contextual`): the per-arm ridge posterior against known answers,
the per-visitor choice (hand-computed draws, the exploration floor, the same arm on every
replica), stickiness, the rollback to bandit weights without or with broken parameters, the
per-segment results, and the app: two replicas fit on the schedule and load the new version."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import random
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from rich.console import Console

from assembly import store
from assembly.config import DecisionSettings
from assembly.decisions import state as decision_state
from assembly.decisions.rules import DecisionEnv, decide
from assembly.decisions.state import Assignment, DecisionState
from assembly.decisions.visitor import Visitor, build_visitor
from assembly.experiments.allocation import Allocations, AllocationStore
from assembly.experiments.bandit_results import BanditRecord
from assembly.experiments.bandit_tasks import AllocationWatcher
from assembly.experiments.contextual import (
    ArmModel,
    Policy,
    fit_arm,
    noise_of,
    uniforms,
)
from assembly.experiments.contextual_params import (
    BrokenParameters,
    compile_policy,
    decode_params,
    encode_params,
)
from assembly.experiments.contextual_segments import contextual_section, segment_summary
from assembly.experiments.contextual_tasks import update_contextual
from assembly.experiments.results import results_document, results_table
from assembly.explain.slots import explain_slot
from assembly.learning.data import Exposure
from assembly.learning.features import Encoder, FeatureSpec
from assembly.ports import Profile
from assembly.schemas import AssembleRequest
from core.redis import Keys
from integration.library import Library, compile_library
from integration.normalize import normalize_items
from integration.store import StoredContent
from segment_sync.config import SegmentSettings
from tests.assembly.arms import EXPERIMENT, SLOT, arm_item, experiment_item, slot_item
from tests.assembly.support import ADMIN, ADMIN_TOKEN, NOW, Client, assemble, runtime, settle
from tests.support.app import make_settings, running_app
from tests.support.demo import demo_items, publish
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

ARMS = ("control", "cta-b", "cta-c")
WRITE_KEY = "wk-contextual-test"
SETTINGS = DecisionSettings(_env_file=None, contextual_min_exposures=10)
DEAL = "deal_seekers"
VIDEO = "video_watchers"
SPECS = [
    FeatureSpec(f"audiences:{DEAL}", "audience"),
    FeatureSpec(f"audiences:{VIDEO}", "audience"),
]


def items(mode: str = "contextual") -> list[dict[str, Any]]:
    experiment = experiment_item(coverage=1.0, mode=mode)
    experiment["fields"].pop("controlWeight")  # the equal split until the first update
    return [
        experiment,
        slot_item("cta-b", "cta-c"),
        arm_item("cta-b", None),
        arm_item("cta-c", None),
    ]


def build(mode: str = "contextual") -> Library:
    content = demo_items()
    for item in items(mode):
        content[item["sys"]["id"]] = item
    entities = {e.key: e for e in normalize_items(list(content.values())).upserts}
    return compile_library(StoredContent(version=7, entities=entities))


def visitor(user: str, *audiences: str) -> Visitor:
    request = AssembleRequest.model_validate(
        {"template": "home", "user": {"id": user}, "context": {"audiences": list(audiences)}}
    )
    return build_visitor(request, Profile())


def planted(floor: float = 0.0, scale: float = 1.0, version: int = 1) -> bytes:
    """Parameters whose means put deal seekers on cta-b and video watchers on cta-c, with a
    tiny spread: the choice is the best arm for the segment."""
    tiny = tuple(tuple(1e-8 if i == j else 0.0 for j in range(3)) for i in range(3))
    arms = [
        ArmModel("control", (0.05, 0.0, 0.0), tiny),
        ArmModel("cta-b", (0.04, 0.20, 0.0), tiny),
        ArmModel("cta-c", (0.03, 0.0, 0.15), tiny),
    ]
    return encode_params(
        version=version,
        at=NOW.timestamp(),
        specs=SPECS,
        arms=arms,
        segments=[],
        floor=floor,
        scale=scale,
    )


def allocations(raw: bytes) -> Allocations:
    return Allocations({}, 1, {EXPERIMENT: compile_policy(EXPERIMENT, raw, ARMS)})


def shown(library: Library, who: Visitor, env: DecisionEnv) -> tuple[str, str]:
    decision = decide(library.slots[SLOT], who, NOW, None, env)
    assert decision.source == "experiment", decision.reason
    assert decision.experiment is not None
    return decision.experiment["variant"], decision.reason


# ---------------------------------------------------------------- the update math


class TestFit:
    def test_mean_is_the_ridge_solution_and_the_covariance_its_inverse(self) -> None:
        rng = np.random.default_rng(11)
        x = np.column_stack([np.ones(200), rng.integers(0, 2, size=(200, 3))]).astype(float)
        y = (rng.random(200) < 0.1 + 0.3 * x[:, 1]).astype(float)
        ridge = 2.0
        arm = fit_arm("b", x.tolist(), y.tolist(), ridge, 4)
        # Ridge as least squares on the data stacked over sqrt(ridge) I with zero targets.
        stacked = np.vstack([x, math.sqrt(ridge) * np.eye(4)])
        expected, *_ = np.linalg.lstsq(stacked, np.concatenate([y, np.zeros(4)]), rcond=None)
        assert np.allclose(arm.mean, expected)
        noise = noise_of(200, int(y.sum()))
        assert np.allclose(arm.cov, noise * np.linalg.inv(ridge * np.eye(4) + x.T @ x))
        assert (arm.exposures, arm.conversions) == (200, int(y.sum()))

    def test_an_arm_without_exposures_keeps_the_prior(self) -> None:
        arm = fit_arm("c", [], [], 4.0, 3)
        assert arm.mean == (0.0, 0.0, 0.0)
        assert np.allclose(arm.cov, noise_of(0, 0) / 4.0 * np.eye(3))  # 0.25 / 4

    def test_moments_are_the_dense_dot_product_and_quadratic_form(self) -> None:
        rng = np.random.default_rng(3)
        root = rng.normal(size=(5, 5))
        cov = root @ root.T
        mean = rng.normal(size=5)
        arm = ArmModel("a", tuple(mean), tuple(tuple(r) for r in cov))
        sparse = [(0, 1.0), (2, 0.5), (3, 2.0)]
        dense = np.array([1.0, 1.0, 0.0, 0.5, 2.0])  # the intercept, then features 0..3
        m, v = arm.moments(sparse)
        assert m == pytest.approx(dense @ mean)
        assert v == pytest.approx(dense @ cov @ dense)

    def test_hand_computed_moments_and_draw(self) -> None:
        # mean (0.1, 0.2, -0.05); cov [[0.04, 0.01, 0], [0.01, 0.09, 0], [0, 0, 1]]
        a = ArmModel(
            "a", (0.1, 0.2, -0.05), ((0.04, 0.01, 0.0), (0.01, 0.09, 0.0), (0.0, 0.0, 1.0))
        )
        # x = (1, 1, 0): mean 0.3, variance 0.04 + 2 x 0.01 + 0.09 = 0.15
        m, v = a.moments([(0, 1.0)])
        assert m == pytest.approx(0.3)
        assert v == pytest.approx(0.15)
        b = ArmModel("b", (0.32, 0.0, 0.0), ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
        policy = Policy("exp", 4, Encoder([]), [a, b], floor=0.0, scale=1.0)
        for user in ("u1", "u2", "u3", "u4", "u5", "u6"):
            _, draw_a, _ = uniforms("exp:4", user, 3)  # [explore, arm a, arm b]
            z = float(np.sqrt(2) * _erfinv(2 * draw_a - 1))
            expected = "a" if 0.3 + z * math.sqrt(0.15) > 0.32 else "b"
            assert policy.choose([(0, 1.0)], user) == expected
        greedy = Policy("exp", 4, Encoder([]), [a, b], floor=0.0, scale=0.0)
        assert greedy.choose([(0, 1.0)], "u1") == "b"  # 0.32 > 0.3 with no spread


def test_uniforms_are_the_hash_bytes_in_order() -> None:
    digest = hashlib.blake2b(b"exp:4|u1", digest_size=24, salt=bytes(16)).digest()
    expected = [
        ((int.from_bytes(digest[i : i + 8], "big") >> 11) + 0.5) / 2**53 for i in (0, 8, 16)
    ]
    assert uniforms("exp:4", "u1", 3) == expected
    many = uniforms("exp:4", "u1", 10)  # past one 64-byte block: a second, salted with 1
    second = hashlib.blake2b(b"exp:4|u1", digest_size=16, salt=(1).to_bytes(16, "big")).digest()
    assert many[8] == ((int.from_bytes(second[:8], "big") >> 11) + 0.5) / 2**53
    assert all(0 < u < 1 for u in many)


def _erfinv(y: float) -> float:
    """Inverse error function by bisection (independent of statistics.NormalDist)."""
    low, high = -6.0, 6.0
    for _ in range(200):
        mid = (low + high) / 2
        if math.erf(mid) < y:
            low = mid
        else:
            high = mid
    return (low + high) / 2


# ---------------------------------------------------------------- choosing


class TestChoice:
    def test_the_same_visitor_gets_the_same_arm_on_every_replica(self) -> None:
        one, two = (compile_policy(EXPERIMENT, planted(0.05, 5000.0), ARMS) for _ in range(2))
        x = one.encoder.encode(visitor("u", DEAL))
        picks = [one.choose(x, f"user-{i}") for i in range(500)]
        assert picks == [two.choose(x, f"user-{i}") for i in range(500)]
        assert len(set(picks)) == 3  # a wide spread explores
        again = compile_policy(EXPERIMENT, planted(0.05, 5000.0, version=2), ARMS)
        moved = [again.choose(x, f"user-{i}") for i in range(500)]
        assert moved != picks  # a new version draws anew for new visitors

    def test_the_floor_keeps_every_arm_in_every_segment(self) -> None:
        policy = compile_policy(EXPERIMENT, planted(floor=0.1), ARMS)
        for segment, best in ((DEAL, "cta-b"), (VIDEO, "cta-c")):
            x = policy.encoder.encode(visitor("u", segment))
            counts = Counter(policy.choose(x, f"v{i}") for i in range(20_000))
            for arm in ARMS:
                assert counts[arm] / 20_000 >= 0.1 * 0.95
            assert counts[best] / 20_000 == pytest.approx(0.7 + 0.1, abs=0.015)

    def test_new_visitors_get_their_segments_best_arm(self) -> None:
        library = build()
        env = DecisionEnv(allocations=allocations(planted()), now_ts=NOW.timestamp())
        for i in range(40):
            assert shown(library, visitor(f"d{i}", DEAL), env)[0] == "cta-b"
            assert shown(library, visitor(f"v{i}", VIDEO), env)[0] == "cta-c"
            label, why = shown(library, visitor(f"n{i}"), env)
            assert label == "control"
            assert why.endswith("(contextual v1)")

    def test_an_assigned_visitor_keeps_the_arm_first_shown(self) -> None:
        library = build()
        env = DecisionEnv(
            allocations=allocations(planted()), now_ts=NOW.timestamp(), state=_assigned("cta-c")
        )
        label, why = shown(library, visitor("d1", DEAL), env)
        assert (label, why.endswith("(sticky)")) == ("cta-c", True)

    def test_explain_gives_the_engines_arm_and_what_the_policy_read(self) -> None:
        library = build()
        env = DecisionEnv(allocations=allocations(planted()), now_ts=NOW.timestamp())
        slot = library.slots[SLOT]
        for i in range(30):
            who = visitor(f"e{i}", DEAL if i % 2 else VIDEO)
            trace = explain_slot(slot, who, NOW, None, env)
            assert trace.decision.experiment == decide(slot, who, NOW, None, env).experiment
        (experiment,) = [s for s in trace.to_json()["steps"] if s["rule"] == "experiment"]
        read = experiment["read"]["contextual"]
        assert read["version"] == 1
        assert read["features"] == {f"audiences:{DEAL}": 1.0}  # i = 29: a deal seeker
        assert read["arms"]["cta-b"]["mean"] == pytest.approx(0.24)
        assert read["arms"]["control"]["sd"] == pytest.approx(math.sqrt(2e-8))

    def test_only_contextual_experiments_use_a_policy(self) -> None:
        policies = allocations(planted())
        assert policies.policy(build("bandit").slots[SLOT].arms[EXPERIMENT]) is None
        assert policies.policy(build().slots[SLOT].arms[EXPERIMENT]) is not None


def _assigned(label: str) -> DecisionState:
    row = {f"a:{EXPERIMENT}".encode(): Assignment(ARMS.index(label), label, "x", 1.0).encode()}
    return DecisionState((row,), key="mbtest:{v:u:d1}:decisions")


# ---------------------------------------------------------------- rollback


class TestRollback:
    @pytest.mark.parametrize(
        ("damage", "problem"),
        [
            (lambda d: b"{not json", "not a JSON object"),
            (lambda d: _patched(d, lambda doc: doc["arms"][1].update(mean=[0.1])), "mean"),
            (
                lambda d: _patched(d, lambda doc: doc["arms"][0]["cov"][1].__setitem__(1, "NaN")),
                "not finite",
            ),
            (lambda d: _patched(d, lambda doc: doc["features"][0].update(kind="neural")), "kind"),
            (lambda d: _patched(d, lambda doc: doc.update(floor=2)), "floor"),
            (lambda d: _patched(d, lambda doc: doc.pop("arms")), "unreadable"),
        ],
    )
    def test_broken_parameters_are_refused(self, damage: Any, problem: str) -> None:
        with pytest.raises(BrokenParameters, match=problem):
            compile_policy(EXPERIMENT, damage(planted()), ARMS)

    def test_parameters_for_other_arms_are_refused(self) -> None:
        with pytest.raises(BrokenParameters, match="arms"):
            compile_policy(EXPERIMENT, planted(), ("control", "cta-b"))

    async def test_missing_or_broken_parameters_fall_back_to_the_bandit_weights(
        self, redis: Redis, keys: Keys
    ) -> None:
        library = build()
        saved = AllocationStore(redis, keys)
        watcher = AllocationWatcher(saved, 5.0)
        await watcher.refresh()
        env = DecisionEnv(allocations=watcher.allocations, now_ts=NOW.timestamp())
        # No parameters: the equal split by hash, for every segment alike.
        labels = Counter(shown(library, visitor(f"d{i}", DEAL), env)[0] for i in range(300))
        assert set(labels) == set(ARMS)
        assert "contextual" not in shown(library, visitor("d1", DEAL), env)[1]
        await saved.put_parameters(EXPERIMENT, planted())
        assert await watcher.refresh()
        env.allocations = watcher.allocations
        assert shown(library, visitor("d1", DEAL), env) == ("cta-b", _reason("cta-b"))
        await saved.put_parameters(EXPERIMENT, _patched(planted(), lambda d: d.pop("features")))
        assert await watcher.refresh()
        assert watcher.allocations.policies == {}
        env.allocations = watcher.allocations
        assert "contextual" not in shown(library, visitor("d1", DEAL), env)[1]


def _reason(label: str) -> str:
    return f"experiment {EXPERIMENT} arm {label} (contextual v1)"


def _patched(raw: bytes, change: Any) -> bytes:
    doc = orjson.loads(raw)
    change(doc)
    return orjson.dumps(doc)


# ---------------------------------------------------------------- results


def test_segment_summary_counts_shares_and_the_model_regret() -> None:
    means = [
        ArmModel("control", (0.1, 0.0), ((0.0, 0.0), (0.0, 0.0))),
        ArmModel("b", (0.05, 0.2), ((0.0, 0.0), (0.0, 0.0))),
    ]
    specs = [FeatureSpec("signals.cartAbandoned", "bool")]
    rows = [
        (_exposure("control", True), [1.0, 1.0]),  # cart: b 0.25 vs control 0.1, lost 0.15
        (_exposure("b", False), [1.0, 1.0]),
        (_exposure("b", False), [1.0, 0.0]),  # no cart: control 0.1 vs b 0.05, lost 0.05
    ]
    cart, other = segment_summary(specs, means, rows)
    assert cart["segment"] == "signals.cartAbandoned"
    assert cart["visitors"] == 2
    assert cart["arms"]["control"] == {
        "shown": 1,
        "share": 0.5,
        "conversions": 1,
        "expectedRate": pytest.approx(0.1),
    }
    assert cart["bestArm"] == "b"
    assert cart["regret"]["conversions"] == pytest.approx(0.15)
    assert other["segment"] == "(none)"
    assert other["bestArm"] == "control"
    assert other["regret"] == {
        "conversions": pytest.approx(0.05),
        "perVisitor": pytest.approx(0.05),
    }


def test_the_terminal_table_shows_the_allocation_per_segment() -> None:
    models = [
        ArmModel("control", (0.05, 0.0, 0.0), _zeros(3)),
        ArmModel("cta-b", (0.04, 0.2, 0.0), _zeros(3)),
        ArmModel("cta-c", (0.03, 0.0, 0.15), _zeros(3)),
    ]
    rows = [(_exposure("cta-b", True), [1.0, 1.0, 0.0])] * 3
    rows += [(_exposure("control", False), [1.0, 1.0, 0.0])]
    rows += [(_exposure("cta-c", False), [1.0, 0.0, 1.0])] * 2
    raw = encode_params(
        version=3,
        at=NOW.timestamp(),
        specs=SPECS,
        arms=models,
        segments=segment_summary(SPECS, models, rows),
        floor=0.05,
        scale=1.0,
    )
    meta = decision_state.TestMeta("experiment", ARMS, (1 / 3,) * 3, "Order Completed")
    counts = store.TestCounts(EXPERIMENT, meta, {"control": 1, "cta-b": 3, "cta-c": 2}, {}, {})
    document = results_document(EXPERIMENT, counts, meta, None, SETTINGS, BanditRecord(None))
    document["contextual"] = contextual_section(decode_params(raw))
    console = Console(record=True, width=160)
    console.print(results_table(document))
    text = console.export_text()
    assert "contextual allocation per segment" in text
    assert "parameters v3" in text
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines()]
    lines = {row[0]: row for row in cells if row and row[0].startswith("audiences:")}
    # segment, visitors, control, cta-b, cta-c, best, regret (0.2 - 0.01 lost on the control one)
    assert lines[f"audiences:{DEAL}"][1:] == ["4", "25.0%", "75.0%", "0.0%", "cta-b", "0.2"]
    assert lines[f"audiences:{VIDEO}"][1:] == ["2", "0.0%", "0.0%", "100.0%", "cta-c", "0.0"]


def _zeros(size: int) -> tuple[tuple[float, ...], ...]:
    return tuple((0.0,) * size for _ in range(size))


def _exposure(variant: str, converted: bool) -> Exposure:
    return Exposure(EXPERIMENT, variant, 0.0, ("u:x",), visitor("x"), converted)


# ---------------------------------------------------------------- the app


RATES = {  # the planted truth: (deal seekers, video watchers, everyone else)
    "control": (0.05, 0.05, 0.05),
    "cta-b": (0.60, 0.02, 0.02),
    "cta-c": (0.03, 0.60, 0.03),
}


async def test_two_replicas_fit_on_the_schedule_and_load_the_new_version(
    redis: Redis, redis_server: RedisServer, keys: Keys
) -> None:
    fast: dict[str, Any] = {
        "bandit_update_seconds": 0.3,
        "bandit_poll_seconds": 0.05,
        "contextual_min_exposures": 300,  # no fit before every first visitor is logged
        "contextual_attribution_seconds": 30 * 86400.0,
        "contextual_window_seconds": 30 * 86400.0,
    }
    rng = random.Random(5)
    async with (
        tracked_app(redis_server.url, **fast) as (app, client),
        tracked_app(redis_server.url, **fast) as (replica, other),
    ):
        for running in (app, replica):
            await publish(running, *items())
        first: dict[str, str] = {}
        converted = []
        for i in range(300):
            group = i % 3
            audiences = [DEAL] if group == 0 else [VIDEO] if group == 1 else []
            user = f"w{i}"
            slot = (await assemble(client, user={"id": user}, context={"audiences": audiences}))[
                SLOT
            ]
            first[user] = slot["experiment"]["variant"]
            assert "contextual" not in slot["reason"]  # no parameters yet: bandit weights
            if rng.random() < RATES[first[user]][group]:
                converted.append(user)
        await settle(app)
        await _goals(client, converted)
        # The schedule fits (one replica), once every conversion is in; both replicas load it.
        fitted = await eventually(
            functools.partial(_stored, redis, keys),
            lambda doc: doc is not None and doc["conversions"] == len(converted),
            within=30,
        )
        assert fitted is not None
        version = fitted["version"]
        for running in (app, replica):
            await eventually(functools.partial(_policy, running), lambda p: p >= version)
        for user in list(first)[:30]:  # assigned visitors keep their arm
            slot = (await assemble(other, user={"id": user}, sessionId="later"))[SLOT]
            assert slot["experiment"]["variant"] == first[user]
        for c in (client, other):
            deal = await _arm_of(c, "fresh-d", DEAL)
            assert re.search(r"\(contextual v\d+\)$", deal[1]), deal[1]  # refits go on
        response = await client.get(f"/admin/experiments/{EXPERIMENT}/results", headers=ADMIN)
        document = response.json()
    assert document["mode"] == "contextual"
    assert document["srm"]["applicable"] is False
    contextual = document["contextual"]
    assert contextual["version"] >= version  # the schedule keeps refitting
    segments = {s["segment"]: s for s in contextual["segments"]}
    assert segments[f"audiences:{DEAL}"]["bestArm"] == "cta-b"
    assert segments[f"audiences:{VIDEO}"]["bestArm"] == "cta-c"
    assert sum(s["visitors"] for s in segments.values()) >= 300


async def _policy(app: Any) -> int:
    """The version of the parameters the replica serves (0: none)."""
    found = runtime(app).engine.bandits.policies.get(EXPERIMENT)
    return found.version if found is not None else 0


async def _stored(redis: Redis, keys: Keys) -> dict[str, Any] | None:
    return decode_params(await AllocationStore(redis, keys).parameters(EXPERIMENT))


async def _arm_of(client: Any, user: str, audience: str) -> tuple[str, str]:
    answer = await assemble(client, user={"id": user}, context={"audiences": [audience]})
    return answer[SLOT]["experiment"]["variant"], answer[SLOT]["reason"]


async def _goals(client: Any, users: list[str]) -> None:
    """The converters' goal events, through the tracking API."""
    at = (NOW + timedelta(minutes=5)).astimezone(UTC).isoformat()
    batch = [
        {"type": "track", "event": "Order Completed", "userId": u, "timestamp": at} for u in users
    ]
    response = await client.post("/v1/batch", json={"writeKey": WRITE_KEY, "batch": batch})
    assert response.status_code == 200, response.text


@asynccontextmanager
async def tracked_app(redis_url: str, **decisions: Any) -> AsyncIterator[Client]:
    """`decision_app` that also takes tracking events (a write key)."""
    settings = make_settings(redis_url)
    service = settings.service.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    settings = dataclasses.replace(
        settings,
        service=service,
        segment=SegmentSettings(_env_file=None, write_keys=WRITE_KEY),
        decisions=DecisionSettings(_env_file=None, **decisions),
    )
    async with running_app(settings) as (app, client):
        app.state.services.assembly.service.clock = lambda: NOW
        yield app, client


async def test_too_few_exposures_store_no_parameters(redis: Redis, keys: Keys) -> None:
    arms = build().slots[SLOT].arms[EXPERIMENT]
    assert await update_contextual(redis, keys, SETTINGS, [arms], NOW.timestamp()) == []
    assert await AllocationStore(redis, keys).parameters(EXPERIMENT) is None
