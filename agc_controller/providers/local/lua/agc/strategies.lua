-- BackendLoadBalancingPolicy on the data plane: how the balancer picks among a
-- backend's endpoints in the rotation, slow start, and the circuit breaker.
--
-- Requests in flight are counted in the shared dict agc_inflight, so all
-- workers see one count: per backend (key "b|<id>") for the circuit breaker,
-- per endpoint (key "e|<id>|<addr:port>") for LeastRequest. A count goes up
-- when a request takes the backend or endpoint, and down in the log phase (or
-- when a retry leaves the endpoint); incr and decr are atomic. A worker that
-- crashes mid-request leaves its requests counted until the data plane
-- restarts, as for OpenResty's resty.limit.conn.
--
-- Slow start: an endpoint's arrival time is kept in the same dict ("s|<key>"),
-- set by the first worker that compiles the backend with it and dropped when a
-- compile finds it gone; until `slow_start` seconds have passed, the rotation
-- takes it with a probability growing linearly from 5 % to 100 %.
local filters = require("agc.filters")

local _M = {}

local crc32 = ngx.crc32_long
local MIN_SHARE = 0.05

function _M.compile(lb)
  if lb == nil then return nil end
  local strategy = lb.strategy or "RoundRobin"
  if strategy ~= "RoundRobin" and strategy ~= "LeastRequest" and strategy ~= "Random"
    and strategy ~= "ConsistentHash" then
    return nil, "load balancing: unknown strategy " .. tostring(strategy)
  end
  local c = { strategy = strategy, max_requests = lb.max_requests }
  if lb.slow_start_ms then c.slow_start = lb.slow_start_ms / 1000 end
  if strategy == "ConsistentHash" then
    local name = lb.hash_name
    if lb.hash_on == "SourceIP" then
      c.hash_var = "remote_addr"
    elseif (lb.hash_on == "Header" or lb.hash_on == "Cookie") and name
      and name:match("^[%w!#%$%%&'%*%+%-%.%^_`|~]+$") then
      c.hash_var = lb.hash_on == "Header" and filters.header_var(name) or ("cookie_" .. name)
    else
      return nil, "load balancing: invalid consistent hash"
    end
  end
  return c
end

-- Endpoint arrivals (slow start): note the new, forget the gone. `target` is the
-- backend this worker just compiled (nil: removed), `previous` the one before.
function _M.note_arrivals(target, previous, now)
  local dict = ngx.shared.agc_inflight
  local present = {}
  if target and target.lb and target.lb.slow_start then
    for _, ep in ipairs(target.endpoints) do
      present[ep.health_key] = true
      dict:add("s|" .. ep.health_key, now)
    end
  end
  for _, ep in ipairs(previous and previous.endpoints or {}) do
    if not present[ep.health_key] then dict:delete("s|" .. ep.health_key) end
  end
end

-- The share of traffic a warming endpoint takes at `now` (1: warmed up).
function _M.share(arrived, window, now)
  if not arrived then return 1 end
  local elapsed = now - arrived
  if elapsed >= window then return 1 end
  return math.max(MIN_SHARE, elapsed / window)
end

-- `skip(ep)` extended by slow start: a warming endpoint is passed over with
-- the probability of the share it does not take yet.
function _M.with_slow_start(lb, skip, random, now)
  if not lb.slow_start then return skip end
  local dict = ngx.shared.agc_inflight
  return function(ep)
    if skip(ep) then return true end
    local share = _M.share(dict:get("s|" .. ep.health_key), lb.slow_start, now)
    return share < 1 and random() >= share
  end
end

-- Rendezvous hashing: the endpoint in the rotation with the highest score for
-- `key`. Endpoints coming or going move only the keys that were theirs.
function _M.by_hash(endpoints, key, skip)
  local best, best_score
  for _, ep in ipairs(endpoints) do
    if not skip(ep) then
      local score = crc32(key .. "|" .. ep.id)
      if not best or score > best_score then best, best_score = ep, score end
    end
  end
  return best
end

-- Power of two choices: of two different endpoints drawn at random (in the
-- rotation), the one with fewer requests in flight (the first drawn on a tie).
-- `count(ep)` reads an endpoint's count; `random_index(n)` draws from 1..n.
function _M.least_request(endpoints, skip, random_index, count)
  local n = #endpoints
  local i = random_index(n)
  local a = endpoints[i]
  if n == 1 then return not skip(a) and a or nil end
  local j = random_index(n - 1)
  if j >= i then j = j + 1 end
  local b = endpoints[j]
  if skip(a) then a = nil end
  if skip(b) then b = nil end
  if not (a and b) then return a or b end
  if count(b) < count(a) then return b end
  return a
end

function _M.endpoint_count(id)
  local dict = ngx.shared.agc_inflight
  return function(ep) return dict:get("e|" .. id .. "|" .. ep.addr .. ":" .. ep.port) or 0 end
end

-- Take one in-flight slot of `key`: "taken" (give it back later), "full" when
-- `max` are taken, or nil when the dict could not count (then nothing to give back).
function _M.take(key, max)
  local dict = ngx.shared.agc_inflight
  local n = dict:incr(key, 1, 0)
  if not n then return nil end
  if max and n > max then
    dict:incr(key, -1)
    return "full"
  end
  return "taken"
end

function _M.give_back(key)
  ngx.shared.agc_inflight:incr(key, -1)
end

return _M
