"""Specification of `audience_changes` / `audience_problem` over Engage's real payload shapes."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from segment_sync.audiences.changes import AudienceChange, audience_changes, audience_problem

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "segment"


def reference(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((REFERENCE / name).read_text("utf-8"))
    return document


def personas(event_class: str, key: str) -> dict[str, Any]:
    return {
        "personas": {
            "computation_class": event_class,
            "computation_id": "aud_2BkvV3NtgbsJ7bHkhZyxZzDtXwS",
            "computation_key": key,
            "namespace": "spa_w5pNbLxqbVsyRNjh4AeRaC",
            "space_id": "spa_w5pNbLxqbVsyRNjh4AeRaC",
        }
    }


def audience_identify(key: str, value: Any, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": "u123",
        "context": personas("audience", key),
        "traits": {key: value, **traits},
    }


def audience_track(name: str, key: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": "u123",
        "event": name,
        "context": personas("audience", key),
        "properties": {"audience_key": key, **properties},
    }


class TestReferencePayloads:
    def test_docs_identify_enters_the_boolean_trait(self) -> None:
        # The docs' computation_key is the placeholder aud_###: every boolean trait is a flag.
        change = audience_changes(reference("engage-audience-identify.json"))
        assert change == AudienceChange(entered=frozenset({"first_time_shopper"}))
        assert audience_problem(reference("engage-audience-identify.json")) is None

    def test_docs_identify_with_false_exits(self) -> None:
        event = reference("engage-audience-identify.json")
        event["traits"]["first_time_shopper"] = False
        assert audience_changes(event) == AudienceChange(exited=frozenset({"first_time_shopper"}))

    def test_docs_track_entered(self) -> None:
        change = audience_changes(reference("engage-audience-track-entered.json"))
        assert change == AudienceChange(entered=frozenset({"first_time_shopper"}))

    def test_docs_track_exited(self) -> None:
        event = reference("engage-audience-track-entered.json")
        event["event"] = "Audience Exited"
        event["properties"]["first_time_shopper"] = False
        assert audience_changes(event) == AudienceChange(exited=frozenset({"first_time_shopper"}))
        assert audience_problem(event) is None

    def test_docs_computed_trait_identify_is_a_trait(self) -> None:
        change = audience_changes(reference("engage-computed-trait-identify.json"))
        assert change is not None
        assert change.entered == change.exited == frozenset()
        assert dict(change.traits) == {"total_revenue_180_days": 450.0}

    def test_docs_computed_trait_track_is_a_trait(self) -> None:
        change = audience_changes(reference("engage-computed-trait-track.json"))
        assert change is not None
        assert not change.entered
        assert not change.exited
        assert dict(change.traits) == {"total_revenue_180_days": 450.0}

    @pytest.mark.parametrize(
        "name",
        ["webhooks-classic-identify.json", "webhooks-classic-track.json", "http-api-alias.json"],
    )
    def test_ordinary_events_are_not_engage_events(self, name: str) -> None:
        event = reference(name)
        assert audience_changes(event) is None
        assert audience_problem(event) is None


class TestIdentify:
    def test_computation_key_names_the_flag_other_traits_stay_traits(self) -> None:
        event = audience_identify("cart_abandoners", True, email="a@example.com", vip=False)
        change = audience_changes(event)
        assert change == AudienceChange(
            entered=frozenset({"cart_abandoners"}),
            traits={"email": "a@example.com", "vip": False},
        )

    def test_exit_through_computation_key(self) -> None:
        change = audience_changes(audience_identify("cart_abandoners", False))
        assert change == AudienceChange(exited=frozenset({"cart_abandoners"}))

    @pytest.mark.parametrize("value", ["true", 1, 0, None, [True], {"v": True}])
    def test_non_boolean_flag_is_a_problem_and_ignored(self, value: Any) -> None:
        event = audience_identify("cart_abandoners", value, plan="pro")
        problem = audience_problem(event)
        assert problem is not None
        assert "'cart_abandoners' must be true or false" in problem
        assert audience_changes(event) == AudienceChange(traits={"plan": "pro"})

    def test_no_boolean_trait_at_all_is_a_problem(self) -> None:
        event = audience_identify("aud_###", "x")
        event["traits"] = {"first_time_shopper": "yes"}
        assert "no boolean membership trait" in (audience_problem(event) or "")

    def test_missing_traits_is_a_problem(self) -> None:
        event = audience_identify("cart_abandoners", True)
        del event["traits"]
        assert audience_problem(event) is not None

    @pytest.mark.parametrize("event_class", ["trait", "computed_trait", "sql_trait"])
    def test_trait_classes_never_make_audiences(self, event_class: str) -> None:
        event = audience_identify("high_value", True)
        event["context"] = personas(event_class, "high_value")
        change = audience_changes(event)
        assert change == AudienceChange(traits={"high_value": True})
        assert audience_problem(event) is None

    def test_identify_without_personas_is_not_engage(self) -> None:
        event = audience_identify("cart_abandoners", True)
        del event["context"]
        assert audience_changes(event) is None


class TestTrack:
    def test_entered_with_key_only(self) -> None:
        change = audience_changes(audience_track("Audience Entered", "cart_abandoners"))
        assert change == AudienceChange(entered=frozenset({"cart_abandoners"}))

    def test_key_falls_back_to_computation_key(self) -> None:
        event = audience_track("Audience Exited", "cart_abandoners")
        del event["properties"]["audience_key"]
        assert audience_changes(event) == AudienceChange(exited=frozenset({"cart_abandoners"}))

    def test_no_key_anywhere_is_a_problem(self) -> None:
        event = audience_track("Audience Entered", "x")
        event["properties"] = {}
        del event["context"]
        assert "audience_key" in (audience_problem(event) or "")
        assert audience_changes(event) is None

    def test_non_boolean_flag_is_a_problem(self) -> None:
        event = audience_track("Audience Entered", "cart_abandoners", cart_abandoners="yes")
        assert "must be true or false" in (audience_problem(event) or "")
        assert audience_changes(event) is None

    def test_flag_contradicting_the_event_is_a_problem(self) -> None:
        event = audience_track("Audience Entered", "cart_abandoners", cart_abandoners=False)
        assert audience_problem(event) is not None
        assert audience_changes(event) is None

    def test_trait_computed_without_trait_key_is_ignored(self) -> None:
        event = reference("engage-computed-trait-track.json")
        del event["properties"]["trait_key"]
        assert audience_changes(event) is None
        assert audience_problem(event) is None

    def test_other_tracks_are_not_engage(self) -> None:
        event = audience_track("Order Completed", "cart_abandoners")
        assert audience_changes(event) is None


class TestAudienceChange:
    def test_apply(self) -> None:
        change = AudienceChange(entered=frozenset({"a"}), exited=frozenset({"b"}))
        assert change.apply(frozenset({"b", "c"})) == frozenset({"a", "c"})

    def test_frozen_and_detached_from_the_event(self) -> None:
        event = audience_identify("cart_abandoners", True, plan="pro")
        original = copy.deepcopy(event)
        change = audience_changes(event)
        assert change is not None
        event["traits"]["plan"] = "free"
        assert change.traits["plan"] == "pro"
        assert audience_changes(original) == change
        with pytest.raises(TypeError):
            change.traits["plan"] = "x"  # type: ignore[index]
