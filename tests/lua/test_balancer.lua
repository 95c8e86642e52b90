-- Endpoint choice (agc.balancer): round robin, session cookies, retry counts.
local t = require("t")
local f = require("fixtures")
local balancer = require("agc.balancer")

local function backend(...)
  local endpoints = {}
  for i, addr in ipairs({ ... }) do endpoints[i] = { addr = addr, port = 80 } end
  return f.state({}, { b = { protocol = "http", endpoints = endpoints } }).backends.b
end

local T = {}

function T.endpoints_take_turns_from_a_random_start()
  local target = backend("10.0.0.1", "10.0.0.2", "10.0.0.3")
  local order = {}
  for i = 1, 4 do
    order[i] = balancer.next_endpoint("turns", target.endpoints, function(n)
      t.eq(n, 3, "the start is drawn among all endpoints")
      return 2
    end).addr
  end
  t.eq(order, { "10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.3" })
end

function T.each_backend_takes_its_own_turns()
  local target = backend("10.0.0.1", "10.0.0.2")
  local function first() return 1 end
  t.eq(balancer.next_endpoint("one", target.endpoints, first).addr, "10.0.0.2")
  t.eq(balancer.next_endpoint("other", target.endpoints, first).addr, "10.0.0.2")
  t.eq(balancer.next_endpoint("one", target.endpoints, first).addr, "10.0.0.1")
end

function T.a_session_cookie_keeps_its_endpoint_while_it_exists()
  local target = backend("10.0.0.1", "10.0.0.2")
  local second = target.endpoints[2]
  local cookie = { type = "Cookie", name = "s" }
  t.eq(balancer.session_endpoint(cookie, target, second.id), second)
  t.eq(balancer.session_endpoint(cookie, target, "gone"), nil)
  t.eq(balancer.session_endpoint(cookie, target, nil), nil)
  t.eq(balancer.session_endpoint({ type = "Header", name = "s" }, target, second.id), nil)
  t.eq(balancer.session_endpoint(nil, target, second.id), nil)
end

function T.the_session_cookie_names_the_endpoint()
  local endpoint = backend("10.0.0.1").endpoints[1]
  t.eq(balancer.session_cookie({ type = "Cookie", name = "s" }, endpoint),
    "s=" .. endpoint.id .. "; Path=/; HttpOnly")
  t.eq(balancer.session_cookie({ type = "Cookie", name = "s", absolute_timeout_s = 60 }, endpoint),
    "s=" .. endpoint.id .. "; Path=/; HttpOnly; Max-Age=60")
end

function T.retries_share_one_count()
  local retry = { attempts = 3 }
  local ctx = {}
  t.eq(balancer.count_try(retry, ctx, false), 3, "the first try grants them all")
  t.eq(balancer.count_try(retry, ctx, true), nil)
  t.eq(ctx.retries, 1, "a connection failure counts one")
  ctx.retries = 2 -- and a retried status code another (router.retry)
  t.eq(balancer.count_try(retry, ctx, false), 1, "a new location's try grants what is left")
  ctx.retries = 3
  t.eq(balancer.count_try(retry, ctx, false), nil)
  t.eq(balancer.count_try(nil, {}, false), nil, "no policy, no retries")
end

return T
