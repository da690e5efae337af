"""Signals derived from events (pure functions): dwell, cart, engagement, visits, consent."""

from __future__ import annotations

from typing import Any

import pytest

from segment_sync.config import SignalRules
from segment_sync.profiles.signals import apply_event, current_signals, event_consent
from segment_sync.profiles.state import ProfileState, decode_row, encode_view

RULES = SignalRules(
    session_timeout=1800, dwell_view_cap=600, cart_window=1800, half_life=3600, recent_events=3
)
T0 = 1_800_000_000.0


def track(name: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": name, "anonymousId": "a", "properties": properties}


def page(category: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"type": "page", "anonymousId": "a", "category": category, **fields}


def run(*events: tuple[float, dict[str, Any]], state: ProfileState | None = None) -> ProfileState:
    state = state or ProfileState()
    for offset, event in events:
        apply_event(state, event, T0 + offset, RULES)
    return state


def signals(state: ProfileState, at: float) -> dict[str, Any]:
    return current_signals(state, T0 + at)


class TestDwell:
    def test_page_timing_counts_until_the_next_event(self) -> None:
        state = run(
            (0, track("Product Viewed", product_id="sku-1001", category="Shoes")),
            (42, page()),
        )
        assert signals(state, 3600)["dwell"] == {"sku-1001": 42.0}

    def test_explicit_duration_counts_at_once_and_opens_no_view(self) -> None:
        state = run((0, track("Product Viewed", product_id="sku-1", duration=35)))
        assert signals(state, 0)["dwell"] == {"sku-1": 35.0}
        assert signals(state, 100)["dwell"] == {"sku-1": 35.0}

    def test_open_view_counts_the_time_so_far_while_the_visit_lasts(self) -> None:
        state = run((0, track("Product Viewed", product_id="sku-1")))
        assert signals(state, 31)["dwell"] == {"sku-1": 31.0}
        assert "dwell" not in signals(state, 1801), "the visit ended: an exit page counts 0"

    def test_views_add_up_and_are_capped(self) -> None:
        state = run(
            (0, track("Product Viewed", product_id="sku-1")),
            (20, page()),
            (30, track("Product Viewed", product_id="sku-1")),
            (30 + 1500, page()),  # 25 minutes on one page: counts the 10 minute cap
        )
        assert signals(state, 9999)["dwell"] == {"sku-1": 620.0}

    def test_page_with_a_product_id_opens_a_product_view(self) -> None:
        state = run((0, page(properties={"product_id": "sku-9"})), (12.5, page()))
        assert signals(state, 100)["dwell"] == {"sku-9": 12.5}

    def test_identify_does_not_close_a_view(self) -> None:
        identify = {"type": "identify", "userId": "u", "traits": {"plan": "pro"}}
        state = run((0, track("Product Viewed", product_id="sku-1")), (5, identify))
        assert state.behaviour.view is not None
        assert state.traits == {"plan": "pro"}


class TestCart:
    def test_added_then_nothing_is_abandoned_after_the_window(self) -> None:
        state = run((0, track("Product Added", product_id="sku-1")))
        assert signals(state, 1799)["cartAbandoned"] is False
        later = signals(state, 1800)
        assert later["cartAbandoned"] is True
        assert later["cart"]["products"] == ["sku-1"]

    def test_order_completed_clears_the_cart(self) -> None:
        state = run(
            (0, track("Product Added", product_id="sku-1")),
            (60, track("Checkout Started", products=[{"product_id": "sku-2"}, {"sku": "sku-3"}])),
            (120, track("Order Completed", order_id="o-1")),
        )
        assert signals(state, 99_999)["cartAbandoned"] is False
        assert "cart" not in signals(state, 99_999)

    def test_checkout_started_lists_the_products_and_extends_the_window(self) -> None:
        state = run(
            (0, track("Product Added", product_id="sku-1")),
            (1000, track("Checkout Started", products=[{"product_id": "sku-2"}])),
        )
        assert signals(state, 1900)["cartAbandoned"] is False
        assert signals(state, 2800)["cart"]["products"] == ["sku-1", "sku-2"]
        assert signals(state, 2800)["cartAbandoned"] is True

    def test_removing_the_last_product_empties_the_cart(self) -> None:
        state = run(
            (0, track("Product Added", product_id="sku-1")),
            (10, track("Product Removed", product_id="sku-1")),
        )
        assert signals(state, 99_999)["cartAbandoned"] is False

    def test_an_add_older_than_the_order_does_not_reopen_the_cart(self) -> None:
        state = run(
            (100, track("Order Completed")),
            (50, track("Product Added", product_id="sku-1")),  # arrived late
        )
        assert signals(state, 99_999)["cartAbandoned"] is False


class TestEngagement:
    def test_clicks_dwell_and_scroll_score_per_category_and_decay(self) -> None:
        state = run(
            (0, page(category="Running")),  # a page view is a click: 1
            (30, track("Promotion Clicked", category="running")),  # 1, and the page's 30 s: 1
            (30, track("Page Scrolled", category="running", scroll_depth=50)),  # 0.5
        )
        first_click = 0.5 ** (30 / 3600)  # decayed for 30 s
        score = first_click + 1 + 1 + 0.5
        assert signals(state, 30)["engagement"] == {"running": round(score, 3)}
        assert signals(state, 30 + 3600)["engagement"] == {"running": round(score / 2, 3)}

    def test_older_events_add_their_decayed_points(self) -> None:
        state = run(
            (3600, track("Product Clicked", category="trail")),
            (0, track("Product Clicked", category="trail")),
        )
        assert signals(state, 3600)["engagement"] == {"trail": 1.5}


class TestVisits:
    def test_visits_sessions_and_last_seen(self) -> None:
        state = run(
            (0, page()),
            (60, page()),
            (60 + 1801, page()),  # a new visit after 30 minutes
            (
                60 + 1900,
                page(context={"sessionId": "s-2"}),  # the frontend's new session, same visit
            ),
        )
        now = signals(state, 4000)
        assert now["visits"] == 2
        assert now["sessions"] == 3
        assert now["lastSeen"] == "2027-01-15T08:32:40.000Z"

    def test_recent_events_are_bounded(self) -> None:
        state = run(*((i, track(f"E{i}")) for i in range(5)))
        assert [e["name"] for e in signals(state, 10)["recentEvents"]] == ["E2", "E3", "E4"]


class TestConsent:
    @pytest.mark.parametrize(
        ("event", "expected"),
        [
            ({"context": {"consent": False}}, False),
            ({"context": {"consent": True}}, True),
            ({"context": {"consent": {"categoryPreferences": {"Personalization": False}}}}, False),
            ({"context": {"consent": {"categoryPreferences": {"Advertising": False}}}}, None),
            ({"type": "identify", "traits": {"consent": False}}, False),
            ({"type": "identify", "traits": {"consent": {"personalization": True}}}, True),
            ({"type": "track", "traits": {"consent": False}}, None),
            ({"context": {"consent": "no"}}, None),
        ],
    )
    def test_consent_fields(self, event: dict[str, Any], expected: bool | None) -> None:
        assert event_consent(event, "personalization") is expected

    def test_no_signals_are_kept_without_consent(self) -> None:
        state = run(
            (0, track("Product Viewed", product_id="sku-1", duration=50)),
            (1, {"type": "identify", "anonymousId": "a", "traits": {"consent": False}}),
            (2, track("Product Added", product_id="sku-1")),
        )
        assert signals(state, 99_999) == {}
        assert state.consent is False
        assert state.traits == {"consent": False}

    def test_signals_start_again_with_consent(self) -> None:
        refused = track("Product Viewed", product_id="sku-1") | {"context": {"consent": False}}
        granted = track("Product Viewed", product_id="sku-2", duration=5)
        state = run((0, refused), (1, granted | {"context": {"consent": True}}))
        assert signals(state, 10)["dwell"] == {"sku-2": 5.0}


def test_state_survives_its_hash_encoding() -> None:
    state = run(
        (0, track("Product Added", product_id="sku-1")),
        (5, track("Product Viewed", product_id="sku-2", category="Trail")),
        (9, {"type": "identify", "userId": "u", "traits": {"plan": "pro"}, "context": {}}),
    )
    state.audiences = {"video_lovers"}
    state.consent = True
    row = {name.encode(): value for name, value in encode_view(state).items()}
    again = decode_row(row)
    assert current_signals(again, T0 + 40) == current_signals(state, T0 + 40)
    assert again.traits == state.traits
    assert again.audiences == state.audiences
    assert again.consent is True


def test_the_bridges_own_exposure_events_are_not_behaviour() -> None:
    exposure = {"type": "track", "event": "Experiment Viewed", "userId": "u", "properties": {}}
    state = run((0, track("Product Viewed", product_id="sku-1")), (20, exposure))
    assert state.behaviour.view is not None, "the product page is still open"
    assert signals(state, 25)["visits"] == 1
    assert [e["name"] for e in signals(state, 25)["recentEvents"]] == ["Product Viewed"]
