"""The server-side halves of the content store's writes (Lua, run atomically by Redis).

Both scripts keep one rule: an entity's stored rank (`2 * sys.revision`, `+1` for a removal, see
`integration/store.py`) only grows. A write whose rank is not above the stored one is skipped,
whoever brings it: a sync page, a webhook, a redelivery.

`WRITE` applies a batch of entity writes (one webhook, or one whole delta sync) in one step.
`INSTALL` switches the live entities to a fully staged generation in one step, keeping what is
newer in the live set than in the staged one.
"""

from __future__ import annotations

# A stored rank: the revisions hash, else (data written before ranks were kept for every key)
# twice the revision inside the stored entity.
_STORED_RANK = """
local function stored_rank(entities, revisions, key)
  local recorded = redis.call('HGET', revisions, key)
  if recorded then return tonumber(recorded) end
  local raw = redis.call('HGET', entities, key)
  if not raw then return 0 end
  local ok, entity = pcall(cjson.decode, raw)
  if ok and type(entity) == 'table' and tonumber(entity['revision']) then
    return 2 * tonumber(entity['revision'])
  end
  return 0
end
"""

# KEYS: entities, revisions, version, written, sync_token, locales, synced_at, dedupe
# ARGV: channel, token ('' = keep), locales ('' = keep), synced_at, dedupe_ttl ('0' = none;
#       the dedupe key is set only when something was applied),
#       then triples: key, rank (0 = a removal of unknown revision), payload ('' = removal)
# Returns {status, base, version, applied keys..., '|', skipped key, stored rank, ...}
WRITE = (
    _STORED_RANK
    + """
local entities, revisions, version_key, written = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local base = tonumber(redis.call('GET', version_key) or '0')
if ARGV[5] ~= '0' and redis.call('EXISTS', KEYS[8]) == 1 then
  return {'duplicate', base, base}
end
local applied, skipped = {}, {}
for i = 6, #ARGV, 3 do
  local key, rank, payload = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local stored = stored_rank(entities, revisions, key)
  if rank == 0 then
    if stored % 2 == 0 then rank = stored + 1 else rank = -1 end
  end
  if rank > stored then
    if payload == '' then
      redis.call('HDEL', entities, key)
    else
      redis.call('HSET', entities, key, payload)
    end
    redis.call('HSET', revisions, key, rank)
    applied[#applied + 1] = key
  else
    skipped[#skipped + 1] = key
    skipped[#skipped + 1] = stored
  end
end
local version = base
if #applied > 0 or ARGV[3] ~= '' then
  version = redis.call('INCR', version_key)
  for _, key in ipairs(applied) do redis.call('ZADD', written, version, key) end
  if ARGV[3] ~= '' then
    redis.call('SET', KEYS[6], ARGV[3])
    redis.call('PUBLISH', ARGV[1], 'changed')
  else
    redis.call('PUBLISH', ARGV[1], cjson.encode({base = base, version = version, keys = applied}))
  end
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[5], ARGV[2])
  redis.call('SET', KEYS[7], ARGV[4])
end
if ARGV[5] ~= '0' and version ~= base then
  redis.call('SET', KEYS[8], '1', 'EX', tonumber(ARGV[5]))
end
local status = 'unchanged'
if version ~= base then status = 'applied' end
local answer = {status, base, version}
for _, key in ipairs(applied) do answer[#answer + 1] = key end
answer[#answer + 1] = '|'
for _, value in ipairs(skipped) do answer[#answer + 1] = value end
return answer
"""
)

# KEYS: entities, revisions, version, written, staged entities, staged ranks, sync_token,
#       locales, synced_at, generation, epoch, old entities (a scratch name)
# ARGV: channel, since (the version when the staging began), token, locales, synced_at,
#       generation (JSON), new epoch (used when the store has none)
# Returns {version, kept, pruned, epoch}
INSTALL = (
    _STORED_RANK
    + """
local entities, revisions, version_key, written = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local staged, staged_ranks = KEYS[5], KEYS[6]
local since = tonumber(ARGV[2])
local kept, pruned = 0, 0
local ranks = redis.call('HGETALL', staged_ranks)
for i = 1, #ranks, 2 do
  local key, rank = ranks[i], tonumber(ranks[i + 1])
  local stored = stored_rank(entities, revisions, key)
  if stored > rank then
    kept = kept + 1
    local live = redis.call('HGET', entities, key)
    if stored % 2 == 1 or not live then
      redis.call('HDEL', staged, key)
    else
      redis.call('HSET', staged, key, live)
    end
  else
    redis.call('HSET', revisions, key, rank)
  end
end
for _, key in ipairs(redis.call('HKEYS', entities)) do
  if redis.call('HEXISTS', staged_ranks, key) == 0 then
    local at = tonumber(redis.call('ZSCORE', written, key) or '-1')
    if at > since then
      kept = kept + 1
      redis.call('HSET', staged, key, redis.call('HGET', entities, key))
    else
      pruned = pruned + 1
      local stored = stored_rank(entities, revisions, key)
      if stored % 2 == 0 then redis.call('HSET', revisions, key, stored + 1) end
      redis.call('ZREM', written, key)
    end
  end
end
if redis.call('EXISTS', entities) == 1 then redis.call('RENAME', entities, KEYS[12]) end
if redis.call('EXISTS', staged) == 1 then redis.call('RENAME', staged, entities) end
redis.call('UNLINK', KEYS[12], staged_ranks)
local version = redis.call('INCR', version_key)
redis.call('SET', KEYS[7], ARGV[3])
if ARGV[4] ~= '' then redis.call('SET', KEYS[8], ARGV[4]) end
redis.call('SET', KEYS[9], ARGV[5])
redis.call('SET', KEYS[10], ARGV[6])
local epoch = redis.call('GET', KEYS[11])
if not epoch then
  epoch = ARGV[7]
  redis.call('SET', KEYS[11], epoch)
end
redis.call('PUBLISH', ARGV[1], 'changed')
return {version, kept, pruned, epoch}
"""
)
