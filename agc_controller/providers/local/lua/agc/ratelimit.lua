-- Rate limits (RateLimitPolicy): a token bucket per (policy target, key), and a
-- count of the key's requests in flight.
--
-- Each bucket is one number in the shared dict agc_ratelimit, the generic cell
-- rate algorithm's "theoretical arrival time": the moment the key's debt is
-- paid off. Every admitted request adds one interval (period / requests) of
-- debt; a request is admitted while the debt it leaves is at most `burst`
-- intervals. So a key sends `requests` per period, sustained, and up to `burst`
-- at once after a pause. An entry expires once its debt is paid (an absent key
-- is an idle one), so the dict holds only keys active within their burst window.
--
-- All workers share the dict, and a bucket's name is the policy and its target
-- (not a rule or a state version): a route change or state update never resets
-- a count. Reading and writing a bucket are two dict operations, not one
-- atomic step: two workers admitting the same key in the same instant may each
-- admit one request more than the budget left (never more than one per worker).
-- When the dict is full, its least recently used keys are evicted (they start
-- afresh).
--
-- Concurrency (spec.concurrency, NGINX's limit_conn for our keys): a key's
-- requests in flight are counted in the shared dict agc_inflight (key "c|" and
-- the bucket's), with agc.strategies' take, as the circuit breaker counts a
-- backend's. A request takes its slot when its limit is checked and gives it
-- back in the log phase (router.log), which runs exactly once for every request
-- whatever answered it: a later check, the backend, a retry, the client going
-- away. What the log phase reads must survive ngx.exec, which drops ngx.ctx:
-- router.forward stashes the context before each jump (agc.ctxstash). A count
-- back at 0 is deleted, so the dict holds only the keys with requests in flight
-- (a count per client ever seen would crowd out the backends' counts sharing
-- it); a request taking a slot in the very instant another worker deletes its
-- key's 0 goes uncounted, letting one more in while it is in flight.
local filters = require("agc.filters")
local strategies = require("agc.strategies")

local _M = {}

local ngx_var = ngx.var
local floor, ceil, max = math.floor, math.ceil, math.max

-- header values longer than this are keyed by their digest (bounded dict keys)
local KEY_MAX = 64

-- A RateLimit of the router state compiled; nil and a message for one that is
-- malformed (the controller never sends one).
function _M.compile(limit)
  if limit == nil then return nil end
  local concurrency = limit.concurrency
  if concurrency ~= nil and (type(concurrency) ~= "number" or concurrency < 1) then
    return nil, "rate limit: concurrency must be a number of at least 1"
  end
  if limit.requests == nil and concurrency == nil then
    return nil, "rate limit: neither a rate nor a concurrency"
  end
  local var
  if limit.header then
    var = filters.header_var(limit.header)
  end
  local c = {
    -- a verified JWT's claim keys the budget: checked after the AuthPolicy (router.lua)
    claim = limit.claim,
    -- 16 bytes name the bucket, whatever the length of the policy's name
    prefix = ngx.md5_bin(limit.bucket),
    var = var,
    concurrency = concurrency,
  }
  if limit.requests then
    local interval = limit.period_s / limit.requests
    c.interval = interval
    c.capacity = interval * limit.burst
    c.requests = limit.requests
    c.period_s = limit.period_s
    c.burst = limit.burst
    c.policy = limit.requests .. ";w=" .. limit.period_s .. ";burst=" .. limit.burst
  end
  return c
end

local function client_key(limit, ctx)
  local value
  if limit.claim then
    local claims = ctx.jwt_claims
    value = claims and claims[limit.claim]
    local kind = type(value)
    if kind ~= "string" and kind ~= "number" and kind ~= "boolean" then return "" end
    value = tostring(value)
  elseif limit.var then
    value = ngx_var[limit.var]
  else
    return ngx_var.binary_remote_addr or ""
  end
  if value == nil then return "" end
  if #value > KEY_MAX then return ngx.md5_bin(value) end
  return value
end

-- The decision for one request at time `now` (seconds) against the debt time
-- `paid_at` stored for its key (nil: none). Returns admitted, the new debt time
-- (admitted only), and the seconds to wait before a retry (refused only).
function _M.decide(limit, paid_at, now)
  local after = max(paid_at or now, now) + limit.interval
  if after - now <= limit.capacity + 1e-9 then
    return true, after, 0
  end
  return false, nil, after - now - limit.capacity
end

-- The RateLimit-* header values: how many more requests may come at once, and
-- the whole seconds until the bucket is full again.
function _M.remaining(limit, paid_at, now)
  local debt = max((paid_at or now) - now, 0)
  return max(floor((limit.capacity - debt) / limit.interval + 1e-9), 0), ceil(debt)
end

-- Take one request for `key` (bucket prefix included) at time `now` out of the
-- shared dict: admitted or not, the RateLimit-* headers, and (refused) the
-- whole seconds to wait before a retry.
function _M.take(limit, key, now)
  local dict = ngx.shared.agc_ratelimit
  local paid_at = dict:get(key)
  local admitted, after, wait = _M.decide(limit, paid_at, now)
  if admitted then
    -- expire once the debt is paid: from then on the key is idle
    dict:set(key, after, after - now + 1)
    paid_at = after
  end
  local remaining, reset = _M.remaining(limit, paid_at, now)
  local headers = {
    ["RateLimit-Limit"] = limit.requests,
    ["RateLimit-Remaining"] = remaining,
    ["RateLimit-Reset"] = reset,
    ["RateLimit-Policy"] = limit.policy,
  }
  return admitted, headers, admitted and 0 or max(ceil(wait), 1)
end

-- Take an in-flight slot of `key` (bucket prefix included): false when the key
-- has `limit.concurrency` requests in flight; else true and the slot's name, to
-- give back with `leave` (nil when the dict could not count: nothing to give back).
function _M.enter(limit, key)
  local slot = "c|" .. key
  local taken = strategies.take(slot, limit.concurrency)
  if taken == "full" then return false end
  return true, taken == "taken" and slot or nil
end

-- Give back a slot `enter` took (once per request: router.log).
function _M.leave(slot)
  local dict = ngx.shared.agc_inflight
  local n = dict:incr(slot, -1)
  if n and n <= 0 then dict:delete(slot) end
end

-- Check the request against `limit`: true to go on, with the headers for the
-- response and the in-flight slot taken (ctx.limit_slot, given back by
-- router.log) in `ctx`; otherwise it is answered here with 429: at once when the
-- key has all its requests in flight, with Retry-After when over the rate. The
-- slot is taken first, so a request refused for its concurrency never spends the
-- rate's budget.
function _M.check(limit, ctx)
  local key = limit.prefix .. client_key(limit, ctx)
  if limit.concurrency then
    local entered, slot = _M.enter(limit, key)
    if not entered then
      ngx.exit(429)
      return false
    end
    ctx.limit_slot = slot
  end
  if not limit.interval then return true end
  local admitted, headers, wait = _M.take(limit, key, ngx.now())
  if admitted then
    ctx.limit_headers = headers
    return true
  end
  local h = ngx.header
  for name, value in pairs(headers) do h[name] = value end
  h["Retry-After"] = wait
  ngx.exit(429)
  return false
end

return _M
