"""Behavioural signals from Segment events, as pure functions (docs/events.md "Signals").

`apply_event` folds one event into a profile state; `current_signals` turns the stored state
into what conditions see as `signals.*`, at read time, so that signals which depend on the time
passing (an abandoned cart, a decaying engagement score, the product page still open) are
right on the next `/v1/assemble` without any event or timer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from segment_sync.audiences.changes import (
    AUDIENCE_ENTERED,
    AUDIENCE_EXITED,
    PERSONAS_TRAIT,
    TRAIT_COMPUTED,
    audience_changes,
)
from segment_sync.config import SignalRules
from segment_sync.profiles.state import Behaviour, Cart, ProfileState, View, counters, decay, iso

PRODUCT_VIEWED = "Product Viewed"
PRODUCT_ADDED = "Product Added"
PRODUCT_REMOVED = "Product Removed"
CHECKOUT_STARTED = "Checkout Started"
ORDER_COMPLETED = "Order Completed"
CLICKED_SUFFIX = " Clicked"  # "Product Clicked", "Promotion Clicked", "CTA Clicked", ...

ACTIVITY_TYPES = frozenset({"track", "page", "screen"})
# Bookkeeping, not behaviour: the bridge's own exposure events (assembly) derive no signals.
PASSIVE_EVENTS = frozenset({"Experiment Viewed"})
MAX_DWELL_PRODUCTS = 200
MAX_CATEGORIES = 100
_PRODUCT_KEYS = ("product_id", "productId", "sku")
_DURATION_KEYS = ("dwell_seconds", "duration")
_SCROLL_KEYS = ("scroll_depth", "percent_scrolled")
DEFAULT_RULES = SignalRules()
_ENGAGE_EVENTS = frozenset({AUDIENCE_ENTERED, AUDIENCE_EXITED, TRAIT_COMPUTED})


def apply_event(
    state: ProfileState,
    event: Mapping[str, Any],
    at: float,
    rules: SignalRules,
    *,
    trusted: bool = True,
) -> bool:
    """Fold one normalized Segment message (at `at`, epoch seconds) into `state`.

    Engage data (audience entries and exits, computed traits, the `personas` trait) is applied
    only when the message comes from a `trusted` source (docs/events.md "Trusted sources");
    otherwise that part is left out. Returns True when something was left out for that reason.
    """
    kind = event.get("type")
    change = audience_changes(event) if _maybe_engage(event) else None
    ignored = change is not None and not trusted
    if change is not None and trusted:
        for key in change.entered | change.exited:
            state.change_audience(key, key in change.entered, at)
        state.traits.update(change.traits)
    elif kind == "identify" and change is None:
        traits = _mapping(event.get("traits"))
        if not trusted and PERSONAS_TRAIT in traits:
            traits = {k: v for k, v in traits.items() if k != PERSONAS_TRAIT}
            ignored = True
        state.traits.update(traits)
    elif kind == "group":
        state.traits["group"] = {**_mapping(event.get("traits")), "id": event.get("groupId")}
    consent = event_consent(event, rules.consent_category)
    if consent is not None:
        state.consent = consent
    if state.consent is False:
        state.behaviour = Behaviour()  # no signals are kept for a visitor without consent
        return ignored
    if kind in ACTIVITY_TYPES and change is None and event.get("event") not in PASSIVE_EVENTS:
        _activity(state.behaviour, event, at, rules)
    return ignored


def _maybe_engage(event: Mapping[str, Any]) -> bool:
    """Whether `audience_changes` can find anything (it is called for few events, cheaply)."""
    if event.get("type") == "track" and event.get("event") in _ENGAGE_EVENTS:
        return True
    return "personas" in _mapping(event.get("context"))


def event_consent(event: Mapping[str, Any], category: str) -> bool | None:
    """Consent for personalization that an event states, or None when it says nothing.

    `context.consent` as a boolean, or Segment's consent object with
    `categoryPreferences.<category>` (matched case-insensitively); on `identify`, also the
    trait `consent`, as a boolean or an object with the same category.
    """
    context = _mapping(event.get("context"))
    found = _consent_value(context.get("consent"), category)
    if found is None and event.get("type") == "identify":
        found = _consent_value(_mapping(event.get("traits")).get("consent"), category)
    return found


def _consent_value(value: Any, category: str) -> bool | None:
    if isinstance(value, bool):
        return value
    if type(value) is not dict:
        return None
    prefs = value.get("categoryPreferences", value)
    if type(prefs) is not dict:
        return None
    wanted = category.lower()
    for name, granted in prefs.items():
        if isinstance(name, str) and name.lower() == wanted and isinstance(granted, bool):
            return granted
    return None


# ---------------------------------------------------------------- activity


def _activity(b: Behaviour, event: Mapping[str, Any], at: float, rules: SignalRules) -> None:
    props = _mapping(event.get("properties"))
    _count_visit(b, event, props, at, rules)
    if b.view is not None and at >= b.view.at:
        _close_view(b, at, rules)
    b.last_seen = at if b.last_seen is None else max(b.last_seen, at)
    kind = event.get("type")
    name = event.get("event") if kind == "track" else event.get("name")
    category = _category(event, props)
    product = _product(props)
    if kind != "track" or name == PRODUCT_VIEWED:
        _view(b, product, category, _duration(props), at, rules)
        _engage(b, category, 1.0, at, rules)
    elif isinstance(name, str):
        _track(b, name, props, product, category, at, rules)
    _scroll(b, props, category, at, rules)
    _remember(b, kind, name, product, at, rules)


def _count_visit(
    b: Behaviour, event: Mapping[str, Any], props: Mapping[str, Any], at: float, rules: SignalRules
) -> None:
    new_visit = b.last_seen is None or abs(at - b.last_seen) > rules.session_timeout
    session = _text(_mapping(event.get("context")).get("sessionId")) or _text(
        props.get("sessionId")
    )
    if new_visit:
        b.visits += 1
    if (session is not None and session != b.session_id) or (session is None and new_visit):
        b.sessions += 1
    if session is not None:
        b.session_id = session
    elif new_visit:
        b.session_id = None


def _view(
    b: Behaviour,
    product: str | None,
    category: str | None,
    duration: float | None,
    at: float,
    rules: SignalRules,
) -> None:
    if duration is None:
        b.view = View(product, category, at, rules.dwell_view_cap, rules.session_timeout)
        return
    _credit(b, product, category, min(duration, rules.dwell_view_cap), at, rules)


def _close_view(b: Behaviour, at: float, rules: SignalRules) -> None:
    view = b.view
    assert view is not None
    b.view = None
    elapsed = at - view.at
    if elapsed <= view.timeout:  # a longer gap ended the visit: an exit page, time unknown
        _credit(b, view.product, view.category, min(elapsed, view.cap), at, rules)


def _credit(
    b: Behaviour,
    product: str | None,
    category: str | None,
    seconds: float,
    at: float,
    rules: SignalRules,
) -> None:
    if seconds <= 0:
        return
    if product is not None:
        b.dwell[product] = b.dwell.get(product, 0.0) + seconds
        if len(b.dwell) > MAX_DWELL_PRODUCTS:
            del b.dwell[min(b.dwell, key=b.dwell.__getitem__)]
    _engage(b, category, seconds / rules.dwell_seconds_per_point, at, rules)


def _track(
    b: Behaviour,
    name: str,
    props: Mapping[str, Any],
    product: str | None,
    category: str | None,
    at: float,
    rules: SignalRules,
) -> None:
    if name.endswith(CLICKED_SUFFIX):
        _engage(b, category, 1.0, at, rules)
    elif name == PRODUCT_ADDED:
        _add_to_cart(b, [product] if product else [], at, rules)
    elif name == CHECKOUT_STARTED:
        items = props.get("products")
        listed = [_product(_mapping(item)) for item in items] if isinstance(items, list) else []
        _add_to_cart(b, [p for p in listed if p], at, rules)
    elif name == PRODUCT_REMOVED and b.cart is not None and product in b.cart.products:
        b.cart.products.remove(product)
        if not b.cart.products:
            b.cart = None
    elif name == ORDER_COMPLETED:
        b.ordered_at = at if b.ordered_at is None else max(b.ordered_at, at)
        if b.cart is not None and at >= b.cart.at:
            b.cart = None


def _add_to_cart(b: Behaviour, products: list[str], at: float, rules: SignalRules) -> None:
    if b.ordered_at is not None and at <= b.ordered_at:
        return  # an add that an order already followed (arrived late)
    cart = b.cart
    if cart is None:
        cart = b.cart = Cart([], at, at + rules.cart_window)
    cart.products.extend(p for p in products if p not in cart.products)
    cart.at = max(cart.at, at)
    cart.due = max(cart.due, at + rules.cart_window)


def _scroll(
    b: Behaviour, props: Mapping[str, Any], category: str | None, at: float, rules: SignalRules
) -> None:
    for key in _SCROLL_KEYS:
        depth = props.get(key)
        if _is_number(depth):
            _engage(b, category, min(max(float(depth), 0.0), 100.0) / 100.0, at, rules)
            return


def _engage(
    b: Behaviour, category: str | None, points: float, at: float, rules: SignalRules
) -> None:
    if category is None or points <= 0:
        return
    half_life = b.half_life = b.half_life or rules.half_life
    score, since = b.engagement.get(category, (0.0, at))
    if at >= since:
        b.engagement[category] = (score * decay(at - since, half_life) + points, at)
    else:  # an older event: its points have decayed by the time of the score
        b.engagement[category] = (score + points * decay(since - at, half_life), since)
    if len(b.engagement) > MAX_CATEGORIES:
        del b.engagement[min(b.engagement, key=lambda c: b.engagement[c][0])]


def _remember(
    b: Behaviour, kind: Any, name: Any, product: str | None, at: float, rules: SignalRules
) -> None:
    if rules.recent_events <= 0:
        return
    entry: dict[str, Any] = {"type": kind, "name": name if isinstance(name, str) else None}
    if product is not None:
        entry["productId"] = product
    entry["at"] = iso(at)
    b.recent.append(entry)
    if len(b.recent) > rules.recent_events:
        del b.recent[: len(b.recent) - rules.recent_events]


# ---------------------------------------------------------------- read time


def current_signals(state: ProfileState, now: float) -> dict[str, Any]:
    """`signals.*` as conditions see them at `now` (epoch seconds).

    Needs no settings: the cart's deadline, the open view's limits and the half-life were
    stored with the state by the consumer.
    """
    b = state.behaviour
    out: dict[str, Any] = dict(b.extra)
    out.update(counters(b))
    dwell = dict(b.dwell)
    view = b.view
    if view is not None and view.product is not None:
        open_for = now - view.at
        if 0 < open_for <= view.timeout:
            dwell[view.product] = dwell.get(view.product, 0.0) + min(open_for, view.cap)
    if dwell:
        out["dwell"] = {product: round(seconds, 1) for product, seconds in dwell.items()}
    if b.recent:
        out["recentEvents"] = b.recent
    if b.engagement:
        half_life = b.half_life or DEFAULT_RULES.half_life
        out["engagement"] = {
            category: round(score * decay(now - at, half_life), 3)
            for category, (score, at) in b.engagement.items()
        }
    if b.tracked:
        cart = b.cart
        out["cartAbandoned"] = cart is not None and now >= cart.due
        if cart is not None:
            out["cart"] = {"products": list(cart.products), "updatedAt": iso(cart.at)}
    return out


# ---------------------------------------------------------------- event fields


_EMPTY: Mapping[str, Any] = {}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if type(value) is dict else _EMPTY  # messages are JSON: dicts, not Mappings


def _is_number(value: Any) -> TypeGuard[int | float]:
    return type(value) in (int, float)


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if _is_number(value):
        return str(value)
    return None


def _product(props: Mapping[str, Any]) -> str | None:
    for key in _PRODUCT_KEYS:
        found = _text(props.get(key))
        if found is not None:
            return found
    return None


def _category(event: Mapping[str, Any], props: Mapping[str, Any]) -> str | None:
    found = _text(props.get("category")) or _text(event.get("category"))
    if found is None:
        return None
    return found.strip().lower() or None


def _duration(props: Mapping[str, Any]) -> float | None:
    for key in _DURATION_KEYS:
        value = props.get(key)
        if _is_number(value) and value >= 0:
            return float(value)
    return None
