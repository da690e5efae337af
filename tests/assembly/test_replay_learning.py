"""Replay's rebuild of what learned at decision time: the recorded bandit weights, a contextual
policy only at the recorded parameter version, and records logged before any of it was kept.
(The app-level replays are in test_bandit.py and test_model_scoring.py.)"""

from __future__ import annotations

from assembly.decision_log.learned import NOT_RECORDED, rebuild
from assembly.experiments.allocation import EMPTY_ALLOCATIONS, Allocations
from assembly.experiments.contextual import ArmModel, Policy
from assembly.learning.features import Encoder

ARMS = ["control", "cta-b"]


def policy(version: int) -> Policy:
    arm = ArmModel("control", (0.1,), ((1.0,),))
    other = ArmModel("cta-b", (0.2,), ((1.0,),))
    return Policy("exp", version, Encoder([]), [arm, other], floor=0.0)


def recorded(policy_version: int | None) -> dict[str, object]:
    entry = {"version": 3, "arms": ARMS, "weights": [0.2, 0.8], "policy": policy_version}
    return {"model": None, "bandits": {"exp": entry}}


async def test_the_recorded_weights_are_the_ones_replayed() -> None:
    learned = await rebuild(recorded(None), None, EMPTY_ALLOCATIONS)
    allocation = learned.allocations.by_key["exp"]
    assert (allocation.version, allocation.by_label()) == (3, {"control": 0.2, "cta-b": 0.8})
    assert learned.model is None
    assert learned.notes == ()
    assert learned.to_json(recorded(None))["bandits"] == {
        "exp": {"version": 3, "weights": {"control": 0.2, "cta-b": 0.8}}
    }


async def test_a_contextual_policy_is_used_only_at_the_recorded_version() -> None:
    same = Allocations(policies={"exp": policy(7)})
    learned = await rebuild(recorded(7), None, same)
    assert learned.allocations.policies["exp"] is same.policies["exp"]
    assert learned.notes == ()

    moved = await rebuild(recorded(7), None, Allocations(policies={"exp": policy(8)}))
    assert moved.allocations.policies == {}
    assert moved.notes == (
        "experiment exp: contextual parameters version 7 are no longer in force here: "
        "replayed with its bandit weights",
    )


async def test_a_record_from_before_is_replayed_without_and_says_so() -> None:
    learned = await rebuild(None, None, EMPTY_ALLOCATIONS)
    assert (learned.model, learned.allocations.by_key, learned.notes) == (None, {}, (NOT_RECORDED,))
