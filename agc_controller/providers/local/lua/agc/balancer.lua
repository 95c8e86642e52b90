-- balancer_by_lua: pick the endpoint of the backend the router chose.
-- Endpoints take turns (round robin per backend, from a random start in each
-- worker). Session persistence: a cookie names the endpoint; while that
-- endpoint is still in the backend it is kept, otherwise a new one is picked
-- and named. A retry must leave the endpoint that just failed, cookie or not.
-- Health checks (agc.health): an endpoint out of the rotation is passed over,
-- its session cookie too; when every endpoint is out, all take turns again
-- (a backend never goes dark because its probes do).
local balancer = require("ngx.balancer")
local config = require("agc.config")
local ctxstash = require("agc.ctxstash")
local health = require("agc.health")
local strategies = require("agc.strategies")

local _M = {}
-- backend id -> the index of the endpoint it gave last (per worker)
local last_index = {}

-- The endpoint after the one `id` gave last; `random(n)` picks the first.
function _M.next_endpoint(id, endpoints, random)
  local i = (last_index[id] or random(#endpoints)) % #endpoints + 1
  last_index[id] = i
  return endpoints[i]
end

-- The next endpoint of backend `id` in the rotation: round robin over those
-- `out(ep)` does not exclude; all of them when it excludes every one.
function _M.next_in_rotation(id, endpoints, random, out)
  local first = _M.next_endpoint(id, endpoints, random)
  if not out(first) then return first end
  for _ = 2, #endpoints do
    local ep = _M.next_endpoint(id, endpoints, random)
    if not out(ep) then return ep end
  end
  return _M.next_endpoint(id, endpoints, random)
end

-- The endpoint the session cookie's value `wanted` names, if the backend
-- still has it.
function _M.session_endpoint(session, target, wanted)
  if session and session.type == "Cookie" and wanted then return target.by_id[wanted] end
  return nil
end

local function never_out() return false end
local function out_of_rotation(ep) return health.out(ep.health_key) end

-- The Set-Cookie value naming `endpoint` for `session`.
function _M.session_cookie(session, endpoint)
  local cookie = session.name .. "=" .. endpoint.id .. "; Path=/; HttpOnly"
  if session.absolute_timeout_s then cookie = cookie .. "; Max-Age=" .. session.absolute_timeout_s end
  return cookie
end

-- Retries share one count (ctx.retries) between status codes (router.retry)
-- and connection failures (here). On a location's first try (`failed` false)
-- the tries left are granted to NGINX; each later try counts one. Returns the
-- tries to grant, or nil.
function _M.count_try(retry, ctx, failed)
  if not retry then return nil end
  if failed then
    ctx.retries = (ctx.retries or 0) + 1
    return nil
  end
  local remaining = retry.attempts - (ctx.retries or 0)
  if remaining > 0 then return remaining end
  return nil
end

-- The endpoint a backend's strategy picks (agc.strategies), round robin without
-- one. After a failed try the rotation moves on, whatever the strategy (a hash
-- would pick the endpoint that just failed). LeastRequest counts the request
-- against its endpoint until the log phase, or until a retry leaves it.
function _M.by_strategy(id, target, out, failed, ctx)
  local lb = target.lb
  local endpoints = target.endpoints
  if not lb then return _M.next_in_rotation(id, endpoints, math.random, out) end
  local skip = strategies.with_slow_start(lb, out, math.random, ngx.now())
  local chosen
  if not failed then
    local strategy = lb.strategy
    if strategy == "ConsistentHash" then
      local key = ngx.var[lb.hash_var]
      if key and key ~= "" then chosen = strategies.by_hash(endpoints, key, out) end
    elseif strategy == "Random" then
      chosen = endpoints[math.random(#endpoints)]
      if skip(chosen) then chosen = nil end
    elseif strategy == "LeastRequest" then
      chosen = strategies.least_request(endpoints, skip, math.random, strategies.endpoint_count(id))
    end
  end
  chosen = chosen or _M.next_in_rotation(id, endpoints, math.random, skip)
  if lb.strategy == "LeastRequest" then
    if ctx.endpoint_key then strategies.give_back(ctx.endpoint_key) end
    local key = "e|" .. id .. "|" .. chosen.addr .. ":" .. chosen.port
    ctx.endpoint_key = strategies.take(key) == "taken" and key or nil
  end
  return chosen
end

function _M.run()
  local state = config.get()
  local ctx = ctxstash.get()
  local id = ctx.backend
  local target = state and id and state.backends[id]
  if not target or #target.endpoints == 0 then
    return ngx.exit(503)
  end
  -- nil on a location's first try; then NGINX is retrying a connection failure
  local failed = balancer.get_last_failure() ~= nil
  local more = _M.count_try(ctx.retry, ctx, failed)
  if more then balancer.set_more_tries(more) end
  -- passive ejection: the try that just failed counts against its endpoint
  if failed and target.passive and ctx.endpoint then
    health.observe(ctx.endpoint.health_key, true, target.passive)
  end
  local out = (target.health or target.passive) and out_of_rotation or never_out
  local session = ctx.session
  local chosen = not failed and session and
    _M.session_endpoint(session, target, ngx.var["cookie_" .. session.name])
  if chosen and out(chosen) then chosen = nil end
  if not chosen then
    chosen = _M.by_strategy(id, target, out, failed, ctx)
    if session and session.type == "Cookie" then ctx.set_cookie = _M.session_cookie(session, chosen) end
  end
  -- passive ejection learns in the log phase how the endpoint answered
  if target.passive then ctx.endpoint, ctx.passive = chosen, target.passive end
  local ok, err = balancer.set_current_peer(chosen.addr, chosen.port)
  if not ok then
    ngx.log(ngx.ERR, "agc: set_current_peer failed: ", err)
    return ngx.exit(502)
  end
  local timeout = ctx.timeout_ms
  if timeout and timeout > 0 then
    balancer.set_timeouts(timeout / 1000, timeout / 1000, timeout / 1000)
  end
end

return _M
