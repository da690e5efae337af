"""Slot and page decisions on hand-built models: conflicts, caps, coherence, switches, pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from assembly.config import DecisionSettings
from assembly.decisions.engine import DecisionEngine
from assembly.decisions.rules import DecisionEnv, decide
from assembly.decisions.scoring import Scorer
from assembly.decisions.state import Assignment, DecisionState, Periods, session_tag
from assembly.decisions.visitor import Visitor, build_visitor
from assembly.experiments.assignment import conversion_updates, in_rollout
from assembly.killswitch import FixedBoard, KillSwitch, SwitchBoard
from assembly.ports import Profile
from assembly.schemas import AssembleRequest
from assembly.targeting.compiler import compile_condition
from integration.library import Library
from integration.model import Audience, Experiment, FrequencyCap, Slot, Template, Variant

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TS = NOW.timestamp()
SESSION = session_tag("s1")

CART = Audience("aud-cart", "cart-abandoners", segments=frozenset({"cart_abandoners"}))
CART_LIVE = Audience(
    "aud-cart-live",
    "cart-live",
    segments=frozenset({"cart_abandoners"}),
    condition=compile_condition({"signals.cartAbandoned": True}),
)
DWELL = Audience(
    "aud-dwell", "shoe-browsers", condition=compile_condition({"signals.dwell.sku-1": {"$gt": 30}})
)
ABANDONED = Audience(
    "aud-abandoned", "abandoned", condition=compile_condition({"signals.cartAbandoned": True})
)


def variant(key: str, priority: int = 10, updated: str = "2026-11-01", **fields: Any) -> Variant:
    return Variant(
        id=f"var-{key}", key=key, entry_id=key, priority=priority, updated_at=updated, **fields
    )


def slot(*variants: Variant, key: str = "home.hero", **fields: Any) -> Slot:
    return Slot(
        id=f"slot-{key}", key=key, baseline_id=f"{key}-default", variants=variants, **fields
    )


def visitor(
    signals: dict[str, Any] | None = None,
    audiences: tuple[str, ...] = (),
    user: str = "u1",
    session: str | None = "s1",
) -> Visitor:
    request = AssembleRequest.model_validate(
        {"template": "home", "user": {"id": user}, "sessionId": session}
    )
    return build_visitor(request, Profile(audiences=frozenset(audiences), signals=signals or {}))


def env(state: DecisionState | None = None, **kw: Any) -> DecisionEnv:
    defaults: dict[str, Any] = {"coherence": True, "now_ts": TS, "scorer": Scorer(1.0, 1.0, 3600.0)}
    return DecisionEnv(state=state or DecisionState(session=SESSION, key="k"), **{**defaults, **kw})


def state(**fields: str | int) -> DecisionState:
    row = {name.encode(): str(value).encode() for name, value in fields.items()}
    return DecisionState((row,), (), SESSION, "k")


# ---------------------------------------------------------------- conflict resolution


class TestConflicts:
    def test_higher_priority_wins_whatever_the_score(self) -> None:
        hero = slot(
            variant("cart", 20, audiences=(CART,)), variant("live", 10, audiences=(CART_LIVE,))
        )
        who = visitor({"cartAbandoned": True, "at": {"cartAbandoned": TS}}, ("cart_abandoners",))
        decision = decide(hero, who, NOW, None, env())
        assert decision.variant is not None
        assert decision.variant.key == "cart"
        assert decision.reason == "audience cart-abandoners"

    def test_more_specific_audience_wins_a_priority_tie(self) -> None:
        # `broad` was published last, but `live` narrows the same segment by a condition.
        hero = slot(
            variant("broad", 10, "2026-11-20", audiences=(CART,)),
            variant("live", 10, "2026-11-01", audiences=(CART_LIVE,)),
        )
        who = visitor({"cartAbandoned": True}, ("cart_abandoners",))
        decision = decide(hero, who, NOW, None, env())
        assert decision.variant is not None
        assert decision.variant.key == "live"
        assert decision.reason == (
            "audience cart-live (tie at priority 10 with broad: score 0.67 > 0.50)"
        )

    @pytest.mark.parametrize(
        ("cart_age", "dwell_age", "winner"),
        [(60, 7200, "abandoned"), (7200, 60, "dwell"), (600, 600, "dwell")],
    )
    def test_fresher_triggering_signal_wins_a_tie(
        self, cart_age: int, dwell_age: int, winner: str
    ) -> None:
        # Equal priority and specificity: the signal that fired last decides; on equal
        # recency the most recently published (`dwell`) wins.
        hero = slot(
            variant("dwell", 10, "2026-11-20", audiences=(DWELL,)),
            variant("abandoned", 10, "2026-11-10", audiences=(ABANDONED,)),
        )
        signals = {
            "cartAbandoned": True,
            "dwell": {"sku-1": 45},
            "at": {"cartAbandoned": TS - cart_age, "dwell.sku-1": TS - dwell_age},
        }
        decision = decide(hero, visitor(signals), NOW, None, env())
        assert decision.variant is not None
        assert decision.variant.key == winner
        expected = "most recently published" if cart_age == dwell_age else "score"
        assert expected in decision.reason

    def test_iso_timestamps_and_segment_entry_times_count_as_recency(self) -> None:
        hero = slot(
            variant(
                "seg", 10, "2026-11-20", audiences=(Audience("a1", "seg-a", frozenset({"a"})),)
            ),
            variant(
                "seg-b", 10, "2026-11-10", audiences=(Audience("a2", "seg-b", frozenset({"b"})),)
            ),
        )
        signals = {
            "at": {"audiences.b": "2026-11-25T11:59:00Z", "audiences.a": "2026-11-20T00:00:00Z"}
        }
        decision = decide(hero, visitor(signals, ("a", "b")), NOW, None, env())
        assert decision.variant is not None
        assert decision.variant.key == "seg-b"

    def test_equal_scores_go_to_the_most_recently_published(self) -> None:
        hero = slot(variant("new", 10, "2026-11-20"), variant("old", 10, "2026-11-01"))
        decision = decide(hero, visitor(), NOW, None, env())
        assert decision.variant is not None
        assert decision.variant.key == "new"
        assert decision.reason == "everyone (tie at priority 10 with old: most recently published)"


# ---------------------------------------------------------------- caps, switches, coherence


class TestFrequencyCaps:
    CAPPED = variant("promo", 20, frequency_cap=FrequencyCap(max=2, per="day"))
    SESSION_CAPPED = variant("once", 30, frequency_cap=FrequencyCap(max=1, per="session"))

    def test_under_the_cap_the_variant_is_served(self) -> None:
        decision = decide(
            slot(self.CAPPED), visitor(), NOW, None, env(state(**{"n:promo:d20261125": 1}))
        )
        assert decision.variant is self.CAPPED

    def test_a_capped_variant_gives_way_to_the_next_eligible(self) -> None:
        hero = slot(self.CAPPED, variant("fallback", 5))
        decision = decide(hero, visitor(), NOW, None, env(state(**{"n:promo:d20261125": 2})))
        assert decision.variant is not None
        assert decision.variant.key == "fallback"

    def test_a_capped_variant_gives_way_to_the_baseline_with_the_reason(self) -> None:
        decision = decide(
            slot(self.CAPPED), visitor(), NOW, None, env(state(**{"n:promo:d20261125": 2}))
        )
        assert decision.source == "baseline"
        assert decision.reason == "frequency cap: promo (2 per day)"

    def test_yesterdays_views_do_not_count_today(self) -> None:
        decision = decide(
            slot(self.CAPPED), visitor(), NOW, None, env(state(**{"n:promo:d20261124": 9}))
        )
        assert decision.variant is self.CAPPED

    def test_session_caps_count_per_session(self) -> None:
        seen = state(**{f"s:{SESSION}:n:once": 1})
        assert (
            decide(slot(self.SESSION_CAPPED), visitor(), NOW, None, env(seen)).source == "baseline"
        )
        other = DecisionState(seen.rows, (), session_tag("s2"), "k")
        assert (
            decide(slot(self.SESSION_CAPPED), visitor(), NOW, None, env(other)).source == "variant"
        )


class TestKillSwitches:
    def test_admin_variant_switch_removes_the_candidate(self) -> None:
        board = SwitchBoard.of([KillSwitch("variant", "a", "ops", "broken", TS)])
        hero = slot(variant("a", 20), variant("b", 10))
        decision = decide(hero, visitor(), NOW, None, env(board=board))
        assert decision.variant is not None
        assert decision.variant.key == "b"
        alone = decide(slot(variant("a", 20)), visitor(), NOW, None, env(board=board))
        assert alone.reason == "kill switch: variant a (admin)"

    def test_admin_slot_switch_wins_over_session_coherence(self) -> None:
        board = SwitchBoard.of([KillSwitch("slot", "home.hero", "ops", "incident", TS)])
        kept = state(**{f"s:{SESSION}:slot:home.hero": "a"})
        decision = decide(slot(variant("a")), visitor(), NOW, None, env(kept, board=board))
        assert (decision.source, decision.reason) == (
            "baseline",
            "kill switch: slot home.hero (admin)",
        )


class TestSessionCoherence:
    LOW = variant("low", 5)
    HIGH = variant("high", 20, audiences=(CART,))

    def test_the_shown_variant_stays_when_a_higher_priority_one_becomes_eligible(self) -> None:
        kept = state(**{f"s:{SESSION}:slot:home.hero": "low"})
        who = visitor(audiences=("cart_abandoners",))
        decision = decide(slot(self.HIGH, self.LOW), who, NOW, None, env(kept))
        assert decision.variant is self.LOW
        assert decision.reason == "session coherence: everyone"

    def test_turned_off_the_best_variant_wins(self) -> None:
        kept = state(**{f"s:{SESSION}:slot:home.hero": "low"})
        who = visitor(audiences=("cart_abandoners",))
        decision = decide(slot(self.HIGH, self.LOW), who, NOW, None, env(kept, coherence=False))
        assert decision.variant is self.HIGH

    def test_a_variant_no_longer_eligible_is_not_kept(self) -> None:
        kept = state(**{f"s:{SESSION}:slot:home.hero": "high"})
        decision = decide(slot(self.HIGH, self.LOW), visitor(), NOW, None, env(kept))
        assert decision.variant is self.LOW
        assert decision.reason == "everyone"


# ---------------------------------------------------------------- experiments and rollouts

EXPERIMENT = Experiment(
    "exp-1", "test-1", status="running", seed="test-1", goal_event="Order Completed"
)


class TestExperiments:
    ARM = variant("arm-b", 0, experiment=EXPERIMENT, weight=0.5)

    def test_a_sticky_assignment_wins_over_the_hash(self) -> None:
        hero = slot(self.ARM)
        cases = ((0, None, "arm control (sticky)"), (1, self.ARM, "arm arm-b (sticky)"))
        for arm, expected, reason in cases:
            label = "control" if arm == 0 else "arm-b"
            sticky = state(
                **{"a:test-1": Assignment(arm, label, "Order Completed", TS).encode().decode()}
            )
            decision = decide(hero, visitor(), NOW, None, env(sticky))
            assert decision.source == "experiment"
            assert decision.variant is expected
            assert decision.reason == f"experiment test-1 {reason}"
            assert not decision.tests[0].new

    def test_a_stopped_experiment_serves_its_winner_to_everyone(self) -> None:
        stopped = Experiment("exp-1", "test-1", status="stopped", winner=1)
        arm = variant("arm-b", 0, experiment=stopped)
        decision = decide(slot(arm), visitor(), NOW, None, env())
        assert decision.variant is arm
        assert decision.reason == "experiment test-1 stopped: winner arm-b (arm 1)"
        assert not decision.tests

    def test_a_draft_experiment_arm_is_no_candidate(self) -> None:
        draft = Experiment("exp-1", "test-1", status="draft")
        decision = decide(
            slot(variant("arm-b", 10, experiment=draft), variant("other", 5)),
            visitor(),
            NOW,
            None,
            env(),
        )
        assert decision.variant is not None
        assert decision.variant.key == "other"

    def test_conversion_updates_attribute_the_goal_to_the_arm(self) -> None:
        assignments = {
            "test-1": Assignment(1, "arm-b", "Order Completed", TS),
            "test-2": Assignment(0, "control", "Signed Up", TS),
            "rollout:x": Assignment(0, "holdout", "Order Completed", TS),
        }
        event = {"type": "track", "event": "Order Completed", "timestamp": "2026-11-25T12:05:00Z"}
        updates = conversion_updates(event, assignments)
        assert [(u.test, u.arm) for u in updates] == [("test-1", 1), ("rollout:x", 0)]
        early = {**event, "timestamp": "2026-11-25T11:00:00Z"}  # before the assignment
        assert conversion_updates(early, assignments) == []
        assert conversion_updates({**event, "type": "page"}, assignments) == []


class TestRollouts:
    def test_the_share_is_stable_and_growing_keeps_everyone_in(self) -> None:
        small = variant("new-look", rollout=0.2)
        large = variant("new-look", rollout=0.6)
        visitors = [visitor(user=f"u{i}") for i in range(400)]
        inside_small = {v.user_id for v in visitors if in_rollout(small, v)}
        inside_large = {v.user_id for v in visitors if in_rollout(large, v)}
        assert inside_small < inside_large
        assert 0.1 < len(inside_small) / 400 < 0.3
        assert 0.5 < len(inside_large) / 400 < 0.7

    def test_held_out_and_rolled_out_visitors_are_recorded_as_a_test(self) -> None:
        rolled = variant("new-look", 20, rollout=0.5)
        hero = slot(rolled, variant("old", 10))
        outcomes = {}
        for i in range(40):
            decision = decide(hero, visitor(user=f"u{i}"), NOW, None, env())
            outcomes[decision.variant.key if decision.variant else None] = decision
        inside, held = outcomes["new-look"], outcomes["old"]
        assert inside.reason == "everyone (rollout 50%)"
        assert [(t.exposure.test, t.exposure.arm) for t in inside.tests] == [
            ("rollout:new-look", 1)
        ]
        assert [(t.exposure.test, t.exposure.arm) for t in held.tests] == [("rollout:new-look", 0)]


# ---------------------------------------------------------------- page level


def page_engine(**settings: Any) -> DecisionEngine:
    return DecisionEngine(DecisionSettings(_env_file=None, **settings))


def library(*, kill_switch: bool = False) -> Library:
    return Library(1, {}, {}, "en-US", frozenset({"en-US"}), kill_switch=kill_switch)


class TestPage:
    SLOTS = (
        slot(variant("h"), key="hero", category="shoes", pinned=True),
        slot(variant("p"), key="promo", category="promo"),
        slot(variant("r"), key="running", category="running"),
        slot(variant("c"), key="community", category="community"),
    )

    def test_engagement_sequencing_moves_only_unpinned_slots(self) -> None:
        tpl = Template("tpl", "home", self.SLOTS, sequencing="engagement")
        who = visitor({"engagement": {"running": 8.0, "community": 3.0, "shoes": 99.0}})
        page = page_engine().decide_page(library(), tpl, tpl.slots, who, DecisionState(), NOW)
        placed = page.placed
        assert [s.key for s, _ in placed] == ["hero", "running", "community", "promo"]

    def test_engagement_decays_since_its_timestamp(self) -> None:
        tpl = Template("tpl", "home", self.SLOTS, sequencing="engagement")
        week = 7 * 24 * 3600
        signals = {
            "engagement": {"running": 8.0, "community": 3.0},
            "at": {"engagement.running": TS - 3 * week},  # 8 -> 1 after three half-lives
        }
        placed = (
            page_engine()
            .decide_page(library(), tpl, tpl.slots, visitor(signals), DecisionState(), NOW)
            .placed
        )
        assert [s.key for s, _ in placed] == ["hero", "community", "running", "promo"]

    def test_fixed_sequencing_keeps_the_template_order(self) -> None:
        tpl = Template("tpl", "home", self.SLOTS)
        who = visitor({"engagement": {"running": 8.0}})
        page = page_engine().decide_page(library(), tpl, tpl.slots, who, DecisionState(), NOW)
        placed = page.placed
        assert [s.key for s, _ in placed] == ["hero", "promo", "running", "community"]

    def test_max_personalized_keeps_the_top_of_the_sequenced_page(self) -> None:
        tpl = Template("tpl", "home", self.SLOTS, sequencing="engagement", max_personalized=2)
        who = visitor({"engagement": {"community": 5.0}})
        page = page_engine().decide_page(library(), tpl, tpl.slots, who, DecisionState(), NOW)
        placed = page.placed
        shown = [(s.key, d.source) for s, d in placed]
        assert shown == [
            ("hero", "variant"),
            ("community", "variant"),
            ("promo", "baseline"),
            ("running", "baseline"),
        ]
        assert placed[2][1].reason == "maxPersonalized 2 reached"

    @pytest.mark.parametrize(
        ("switch", "reason"),
        [
            (KillSwitch("global", "", "ops", "incident", TS), "kill switch: global (admin)"),
            (
                KillSwitch("template", "home", "ops", "incident", TS),
                "kill switch: template home (admin)",
            ),
        ],
    )
    def test_admin_page_switches(self, switch: KillSwitch, reason: str) -> None:
        engine = page_engine()
        engine.switches = FixedBoard(SwitchBoard.of([switch]))
        tpl = Template("tpl", "home", self.SLOTS)
        placed = engine.decide_page(
            library(), tpl, tpl.slots, visitor(), DecisionState(), NOW
        ).placed
        assert {(d.source, d.reason) for _, d in placed} == {("baseline", reason)}

    def test_the_page_returns_what_it_writes(self) -> None:
        tpl = Template("tpl", "home", self.SLOTS)
        who = visitor({"engagement": {"running": 8.0}})
        keyed = DecisionState(session=SESSION, key="k")
        write = page_engine().decide_page(library(), tpl, tpl.slots, who, keyed, NOW).write
        assert write is not None
        assert write.key == "k"
        assert write.sets[f"s:{SESSION}:slot:hero"] == b"h"

    def test_a_visitor_without_a_state_key_writes_nothing(self) -> None:
        tpl = Template("tpl", "home", self.SLOTS)
        page = page_engine().decide_page(library(), tpl, tpl.slots, visitor(), DecisionState(), NOW)
        assert page.write is None
        assert [d.source for _, d in page.placed] == ["variant"] * 4

    def test_the_content_global_switch_comes_first(self) -> None:
        tpl = Template("tpl", "home", self.SLOTS)
        placed = (
            page_engine()
            .decide_page(library(kill_switch=True), tpl, tpl.slots, visitor(), DecisionState(), NOW)
            .placed
        )
        assert {d.reason for _, d in placed} == {"kill switch: global"}


def test_stale_fields_are_old_periods_and_idle_sessions() -> None:
    idle, live = session_tag("old"), SESSION
    row = {
        b"n:promo:d20261124": b"3",
        b"n:promo:d20261125": b"1",
        b"n:promo:w2026-47": b"9",
        b"n:promo:w2026-48": b"1",
        b"n:promo:l": b"12",
        b"a:test-1": b"{}",
        f"s:{idle}".encode(): str(int(TS - 2 * 86400)).encode(),
        f"s:{idle}:slot:home.hero".encode(): b"x",
        f"s:{live}".encode(): str(int(TS - 60)).encode(),
        f"s:{live}:slot:home.hero".encode(): b"y",
        **{f"pad:{i}".encode(): b"" for i in range(40)},
    }
    stale = DecisionState((row,), (), SESSION, "k").stale_fields(Periods.at(NOW), TS, 86400)
    assert sorted(stale) == sorted(
        ["n:promo:d20261124", "n:promo:w2026-47", f"s:{idle}", f"s:{idle}:slot:home.hero"]
    )
    small = {k: v for k, v in row.items() if not k.startswith(b"pad:")}
    assert DecisionState((small,), (), SESSION, "k").stale_fields(Periods.at(NOW), TS, 86400) == []
