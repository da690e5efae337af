"""Settings of the decision engine (`DECISIONS_*`); see docs/decisions.md."""

from __future__ import annotations

from pydantic import Field

from core.settings import BridgeBaseSettings, SettingsConfigDict


class DecisionSettings(BridgeBaseSettings):
    model_config = SettingsConfigDict(env_prefix="DECISIONS_")

    # --- session coherence
    session_coherence: bool = True
    """Within a session a slot keeps the variant it showed while that variant stays eligible."""
    session_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    """Session state (coherence, session caps, exposure marks) is dropped after this idle time."""
    state_ttl_days: int = Field(default=180, ge=1)
    """Visitor state (sticky assignments, caps) expires this long after its last write."""
    anonymous_state_ttl_days: int = Field(default=30, ge=1)
    """The same for a visitor known only by an anonymousId (a cookie that may never return)."""

    # --- the hot path's store read
    read_budget_seconds: float = Field(default=0.04, gt=0, le=1)
    """Time an assemble waits for the profile and decision state; then it answers degraded."""
    breaker_failures: int = Field(default=3, ge=1)
    """Consecutive failed reads (budget spent, store refused) that open the breaker."""
    breaker_open_seconds: float = Field(default=0.5, gt=0)
    """While open, page views skip the store; then one probe at a time tries it again."""

    # --- conflict resolution among eligible variants of equal priority
    score_specificity_weight: float = Field(default=1.0, ge=0)
    score_recency_weight: float = Field(default=1.0, ge=0)
    recency_half_life_seconds: float = Field(default=3600.0, gt=0)
    """A triggering signal this old counts half as much as a fresh one."""
    score_model_weight: float = Field(default=1.0, ge=0)
    """Weight of the ranking model's score (a conversion chance, 0..1) in the conflict score."""

    # --- ranking model (`cli.py train`, docs/learning.md)
    model_enabled: bool = True
    """Load the published ranking model; false: the rules alone decide, as with no model."""
    model_poll_seconds: float = Field(default=5.0, gt=0)
    """Check the published model version at least this often (an announcement may be missed)."""
    engagement_half_life_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)
    """Read-side decay of `signals.engagement.<category>` since the signal's timestamp."""

    # --- off-path writer
    writer_queue_size: int = Field(default=10_000, ge=1)
    """Requests' pending writes held at once; beyond it writes are dropped (and counted)."""
    writer_batch_size: int = Field(default=256, ge=1)
    writer_flush_seconds: float = Field(default=0.005, ge=0)
    """How long the writer waits to fill a batch after the first pending write."""

    # --- kill switches from the admin API
    kill_switch_poll_seconds: float = Field(default=5.0, gt=0)
    """Reload the switches at least this often, in case a pub/sub message was missed."""

    # --- rollout guardrail
    guardrail_enabled: bool = True
    guardrail_goal_event: str = Field(default="Order Completed", min_length=1)
    """The conversion event that rollouts are compared on."""
    guardrail_alpha: float = Field(default=0.01, gt=0, lt=0.5)
    """One-sided p-value under which the rolled-out variant counts as significantly worse."""
    guardrail_min_sample: int = Field(default=500, ge=1)
    """Visitors needed in each group (rolled out and held out) before the guardrail judges."""
    guardrail_interval_seconds: float = Field(default=60.0, gt=0)

    # --- bandit experiments (`mode: bandit`, docs/learning.md)
    bandit_update_seconds: float = Field(default=300.0, gt=0)
    """How often one replica recomputes the bandits' arm weights (Thompson sampling)."""
    bandit_min_exploration: float = Field(default=0.05, ge=0, lt=0.5)
    """The least share of new visitors any arm of a bandit keeps."""
    bandit_poll_seconds: float = Field(default=5.0, gt=0)
    """How often each replica checks for new bandit weights (one GET; reload on change)."""
    bandit_history: int = Field(default=1000, ge=1)
    """Allocations kept per bandit for the results' allocation over time."""

    # --- contextual bandits (`mode: contextual`, docs/learning.md), fitted on the bandit schedule
    contextual_window_seconds: float = Field(default=7 * 86400.0, gt=0)
    """Decision-log history a fit reads (the first exposure per visitor and experiment)."""
    contextual_attribution_seconds: float = Field(default=86400.0, gt=0)
    """A goal event this long after the exposure, or less, counts as its conversion."""
    contextual_max_decisions: int = Field(default=20_000, ge=100)
    """Decision-log records a fit reads at most."""
    contextual_max_events: int = Field(default=200_000, ge=100)
    """Event-stream entries a fit scans at most for goal events."""
    contextual_time_budget_seconds: float = Field(default=20.0, gt=0)
    """A fit's reading stops when this has passed (what it read so far is used)."""
    contextual_min_exposures: int = Field(default=100, ge=1)
    """Exposures an experiment needs before parameters are stored (before: bandit weights)."""
    contextual_max_features: int = Field(default=12, ge=1)
    """Features in the vector at most (the most common leaves, as the ranking model picks)."""
    contextual_ridge: float = Field(default=1.0, gt=0)
    """The prior's precision (ridge penalty) of each arm's linear model."""
    contextual_exploration_scale: float = Field(default=1.0, ge=0)
    """Multiplies each draw's posterior spread (0: greedy on the means, above the floor)."""

    # --- results
    srm_threshold: float = Field(default=0.001, gt=0, lt=1)
    """Sample-ratio-mismatch flag: chi-square p-value below this means a broken split."""

    # --- decision log and replay (assembly/decision_log)
    log_sample_rate: float = Field(default=1.0, ge=0, le=1)
    """Share of page views whose decision is logged (every answer still carries an id)."""
    log_max_len: int = Field(default=50_000, ge=100)
    """Records kept in the log stream (about; trimmed with `MAXLEN ~`)."""
    log_max_age_seconds: int = Field(default=7 * 86400, ge=60)
    """Records older than this are trimmed (and a visitor's index expires after it)."""
    log_visitor_max: int = Field(default=100, ge=1)
    """Most recent logged decisions indexed per visitor id."""
    log_queue_size: int = Field(default=10_000, ge=1)
    """Records waiting for the off-path writer; beyond it they are dropped (and counted)."""
    log_keep_libraries: int = Field(default=3, ge=1)
    """Compiled libraries kept in memory so a decision replays on the version that made it."""
