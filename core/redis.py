"""The Redis connection: a real server when `REDIS_URL` is set, an embedded one otherwise.

Every key lives under one prefix (`REDIS_KEY_PREFIX`, default `mb`) and is named by `Keys`, the
only place key names are made (tests/core/test_keys.py checks); see docs/storage.md.
Visitor keys carry a hash tag (`{v:<id>}`) so one visitor's keys share a Redis Cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS as _SLOTS
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.cluster import Cluster
from core.settings import StoreSettings

log = structlog.get_logger()


def user_visitor(user_id: str) -> str:
    """The visitor id of a known user (`u:<userId>`), as it appears in visitor key names."""
    return f"u:{user_id}"


def anonymous_visitor(anonymous_id: str) -> str:
    """The visitor id of an anonymous visitor (`a:<anonymousId>`)."""
    return f"a:{anonymous_id}"


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key name and pattern we use: the one place docs/storage.md matches.

    Each family is built by one helper (`_content`, `_visitor`, `_events`, `_decisions`,
    `_webhooks`, `_model`), so a family's Redis Cluster hash tag can be changed in one place.
    """

    prefix: str = "mb"
    # On a Redis Cluster (`REDIS_CLUSTER`) the families that a script or transaction touches
    # together carry one hash tag each (docs/storage.md "Redis Cluster"); on a single node the
    # names stay as they always were.
    cluster: bool = False

    def _tagged(self, family: str, group: str, name: str) -> str:
        """`<p>:<family>:<name>`; on a cluster `<p>:{<group>}:<name>`, one slot per group."""
        if self.cluster:
            return f"{self.prefix}:{{{group}}}:{name}"
        return f"{self.prefix}:{family}:{name}"

    def _content(self, name: str) -> str:
        return self._tagged("content", "content", name)

    def _visitor(self, visitor_id: str, name: str) -> str:
        return f"{self.prefix}:{{v:{visitor_id}}}:{name}"

    def _events(self, name: str) -> str:
        return f"{self.prefix}:events{name}"

    def _decisions(self, name: str, group: str | None = None) -> str:
        """A decisions key; `group` names the keys written together (one slot on a cluster)."""
        if group is None:
            return f"{self.prefix}:decisions:{name}"
        return self._tagged("decisions", f"decisions:{group}", name)

    def _webhooks(self, name: str) -> str:
        return f"{self.prefix}:webhooks:{name}"

    def _model(self, name: str) -> str:
        return self._tagged("model", "model", name)

    # integration: the content store (integration/store.py, store_scripts.py, sync.py)

    @property
    def entities(self) -> str:
        """Hash of the live generation: entity key → normalized entity JSON."""
        return self._content("entities")

    @property
    def revisions(self) -> str:
        """Entity key → rank of the last change applied (`2 * revision`, `+1` for a removal)."""
        return self._content("revisions")

    @property
    def locales(self) -> str:
        """JSON list of the space's locales."""
        return self._content("locales")

    @property
    def sync_token(self) -> str:
        """The token of the next delta sync."""
        return self._content("sync_token")

    @property
    def version(self) -> str:
        """The content version, bumped by every write that changed something."""
        return self._content("version")

    @property
    def synced_at(self) -> str:
        """Unix time of the last completed sync."""
        return self._content("synced_at")

    @property
    def sync_lock(self) -> str:
        """The sync lease (`host:pid:token` of the replica that syncs now)."""
        return self._content("sync_lock")

    @property
    def sync_leader(self) -> str:
        """The sync leader's lease (`host:pid:token`): only its holder runs the periodic sync."""
        return self._content("sync_leader")

    @property
    def content_channel(self) -> str:
        """Pub/sub channel: content changed, replicas recompile their snapshot."""
        return self._content("changed")

    @property
    def written(self) -> str:
        """Sorted set: entity key scored by the content version of its last applied write."""
        return self._content("written")

    @property
    def epoch(self) -> str:
        """Marker set with the first complete generation; its loss means the store lost data."""
        return self._content("epoch")

    @property
    def generation(self) -> str:
        """JSON of the live generation: id, when it was built, how many entities it holds."""
        return self._content("generation")

    @property
    def sync_state(self) -> str:
        """Hash: the running sync (if any), the last success and the last error."""
        return self._content("sync_state")

    @property
    def no_dedupe(self) -> str:
        """Stand-in dedupe key of a write that has none (the write script never sets it)."""
        return self._content("no-dedupe")

    def staged_entities(self, generation: str) -> str:
        """A generation being built by a full sync; it expires if the sync dies."""
        return self._content(f"staged:{generation}:entities")

    def staged_ranks(self, generation: str) -> str:
        """The ranks of a generation being built (expires with it)."""
        return self._content(f"staged:{generation}:ranks")

    def retired_entities(self, generation: str) -> str:
        """Scratch name of the entities a generation switch replaces (unlinked at once)."""
        return self._content(f"retired:{generation}")

    # webhooks: delivery dedupe (webhooks/contentful/store.py, webhooks/segment/service.py)

    def contentful_seen(self, dedupe_id: str) -> str:
        """One applied Contentful delivery (idempotency key, else body hash), expiring."""
        if self.cluster:  # set by the content write script: in the content keys' slot
            return self._content(f"webhooks:contentful:seen:{dedupe_id}")
        return self._webhooks(f"contentful:seen:{dedupe_id}")

    def segment_seen(self, digest: str) -> str:
        """One accepted Segment webhook message (digest of its `messageId`), expiring."""
        return self._webhooks(f"segment:seen:{digest}")

    # segment_sync: profiles and the event stream (store.py, apply.py, consumer.py, pipeline.py)

    def profile(self, visitor_id: str) -> str:
        """A visitor's profile hash (segment_sync/profiles/state.py)."""
        return self._visitor(visitor_id, "profile")

    def profile_seen(self, visitor_id: str) -> str:
        """`messageId`s applied to a profile (segment_sync; a sorted set scored by time)."""
        return self._visitor(visitor_id, "seen")

    def profile_erased(self, visitor_id: str) -> str:
        """Erasure tombstone: events accepted before it are not applied (segment_sync)."""
        return self._visitor(visitor_id, "erased")

    def profile_pull(self, visitor_id: str) -> str:
        """Marker of a Profile API pull for a user: claimed with `SET NX`, then its outcome."""
        return self._visitor(visitor_id, "profile_pull")

    def visitor_pattern(self, visitor_id: str) -> str:
        """SCAN pattern of every key of one visitor id (glob characters escaped)."""
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in visitor_id)
        return self._visitor(escaped, "*")

    @property
    def events_stream(self) -> str:
        """Stream of accepted messages, read by the consumer group."""
        return self._events("")

    def events_shard(self, shard: int, shards: int = 1) -> str:
        """Stream `shard` of `shards` (`SEGMENT_STREAM_SHARDS`). Shard 0 of one is
        `events_stream` (single node or cluster); on a single node shard i is
        `<p>:events:shard:<i>`; on a cluster with several shards, shard i's hash tag is the first
        whose slot lies in the i-th of `shards` equal slot ranges, so that the shards land on
        different masters of an evenly sliced cluster."""
        if not self.cluster or shards == 1:
            return self._events(f":shard:{shard}" if shard else "")
        low, high = shard * _SLOTS // shards, (shard + 1) * _SLOTS // shards
        tag = next(
            f"events:{shard}:{n}"
            for n in range(1_000_000)
            if low <= key_slot(f"events:{shard}:{n}".encode()) < high
        )
        return f"{self.prefix}:{{{tag}}}"

    @property
    def events_dead(self) -> str:
        """Dead-letter stream of entries that kept failing."""
        return self._events(":dead")

    # assembly: decision state, experiments, kill switches, bandits, scoring models, decision log

    def decisions(self, visitor_id: str) -> str:
        """A visitor's decision state (assembly/decisions/state.py), in the profile's slot."""
        return self._visitor(visitor_id, "decisions")

    def test_counts(self, test: str) -> str:
        """Hash of a test's per-arm counters, its meta and guardrail (assembly/store.py)."""
        return self._decisions(f"test:{test}")

    @property
    def tests_index(self) -> str:
        """Set of the tests that have data."""
        return self._decisions("tests")

    @property
    def kill_switches(self) -> str:
        """Hash of the admin kill switches in force (assembly/killswitch.py)."""
        return self._decisions("kill_switches", "switches")

    @property
    def kill_switch_audit(self) -> str:
        """Stream of kill switch changes, with who and why."""
        return self._decisions("audit", "switches")

    @property
    def kill_switch_channel(self) -> str:
        """Pub/sub channel: kill switches changed, replicas reload their board."""
        return self._decisions("changed", "switches")

    @property
    def kill_switch_marker(self) -> str:
        """Written with every kill switch change: its loss means the store lost its data."""
        return self._decisions("kill_switches:kept", "switches")

    @property
    def bandit_weights(self) -> str:
        """Hash: experiment → its bandit's current arm weights (assembly/experiments/allocation)."""
        return self._decisions("bandit:weights", "bandit")

    @property
    def bandit_version(self) -> str:
        """Counter bumped with every change of bandit weights."""
        return self._decisions("bandit:version", "bandit")

    @property
    def bandit_lease(self) -> str:
        """The lease of the replica that recomputes bandit weights."""
        return self._decisions("bandit:lease", "bandit")

    @property
    def bandit_contextual(self) -> str:
        """Hash: experiment → its contextual bandit's parameters (assembly/experiments)."""
        return self._decisions("bandit:contextual", "bandit")

    def bandit_history(self, experiment: str) -> str:
        """List of an experiment's past bandit weights."""
        return self._decisions(f"bandit:history:{experiment}", "bandit")

    @property
    def model_seq(self) -> str:
        """Counter giving each uploaded scoring model its version (assembly/learning)."""
        return self._model("seq")

    @property
    def model_current(self) -> str:
        """The version of the scoring model in force."""
        return self._model("current")

    @property
    def model_channel(self) -> str:
        """Pub/sub channel: the scoring model changed, replicas reload it."""
        return self._model("changed")

    def model_artifact(self, version: int) -> str:
        """One version of a scoring model's artifact."""
        return self._model(f"v:{version}")

    @property
    def decision_log(self) -> str:
        """Stream of logged decisions (assembly/decision_log), capped by length and age."""
        return self._decisions("log", "log")

    @property
    def decision_log_ids(self) -> str:
        """Sorted set (one score, so ordered by name): `<decisionId>:<stream id>`."""
        return self._decisions("log:ids", "log")

    def decision_log_visitor(self, visitor_id: str) -> str:
        """A visitor's logged decisions, `<decisionId>:<stream id>` scored by decision time."""
        return self._visitor(visitor_id, "decision_log")


def keys_for(settings: StoreSettings) -> Keys:
    """The key names of a store: its prefix, and hash tags when it is a cluster."""
    return Keys(settings.key_prefix, cluster=settings.cluster)


def connect(settings: StoreSettings) -> tuple[Redis, bool]:
    """Return a client and whether it is the embedded in-process store.

    With `REDIS_CLUSTER=true` the client is redis-py's `RedisCluster`, seeded by `REDIS_URL`: it
    has the same commands, so it is typed as `Redis`; what reaches below the commands (raw
    connections, see `core.cluster`) asks `cluster_of` first.
    """
    if settings.url is None:
        import fakeredis

        log.info("store.embedded", detail="REDIS_URL unset: using the in-process embedded store")
        return fakeredis.FakeAsyncRedis(), True
    if settings.cluster:
        client = cluster_client(settings.url, settings)
        log.info("store.redis_cluster", url=_redact(settings.url))
        return client, False
    client = _node_client(settings.url, settings, (RedisConnectionError, RedisTimeoutError))
    log.info("store.redis", url=_redact(settings.url))
    return client, False


def writes_client(settings: StoreSettings, redis: Redis) -> Redis:
    """The client for writes that must not run twice (the decision writer's counts, the
    decision log's records). A command that timed out on a stalled server still runs when the
    server wakes, so a retry after a timeout would run it again: this client retries only a
    connection that failed (a restart), never a timeout; the write fails and is counted.
    The embedded store and a cluster (whose client's retries also follow failovers) use `redis`.
    """
    if settings.url is None or settings.cluster:
        return redis
    return _node_client(settings.url, settings, (RedisConnectionError,))


def _node_client(
    url: str, settings: StoreSettings, retry_on: tuple[type[RedisError], ...]
) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        max_connections=settings.max_connections,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=2, supported_errors=retry_on),
        retry_on_error=list(retry_on),
    )


def cluster_client(
    url: str,
    settings: StoreSettings,
    *,
    socket_timeout: float | None = None,
    max_connections: int | None = None,
) -> Redis:
    """A cluster client seeded by `url`: it learns the slot map from that node and follows
    failovers (`MOVED`, a refused connection) by reloading it, within its retry budget."""
    cluster = Cluster.from_url(
        url,
        socket_timeout=socket_timeout or settings.socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        max_connections=max_connections or settings.max_connections,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=6),
    )
    return cast(Redis, cluster)


def _redact(url: str) -> str:
    """Hide a password in a Redis URL before logging it."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
