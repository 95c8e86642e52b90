-- BackendLoadBalancingPolicy on the data plane (agc.strategies, agc.balancer).
local t = require("t")
local strategies = require("agc.strategies")
local balancer = require("agc.balancer")

local function endpoints(n)
  local eps = {}
  for i = 1, n do
    eps[i] = { addr = "10.0.0." .. i, port = 80, id = "id" .. i, health_key = "b|10.0.0." .. i }
  end
  return eps
end

local function never() return false end

local T = {}

function T.compile_checks_the_strategy_and_the_hash_key()
  t.eq(strategies.compile({ strategy = "LeastRequest", slow_start_ms = 30000 }),
    { strategy = "LeastRequest", slow_start = 30 })
  t.eq(strategies.compile({ strategy = "ConsistentHash", hash_on = "Header", hash_name = "X-User" })
    .hash_var, "http_x_user")
  t.eq(strategies.compile({ strategy = "ConsistentHash", hash_on = "Cookie", hash_name = "sid" })
    .hash_var, "cookie_sid")
  t.eq(strategies.compile({ strategy = "ConsistentHash", hash_on = "SourceIP" }).hash_var,
    "remote_addr")
  local c, err = strategies.compile({ strategy = "ConsistentHash", hash_on = "Header",
    hash_name = "a b" })
  t.eq(c, nil)
  t.eq(err, "load balancing: invalid consistent hash")
  c, err = strategies.compile({ strategy = "Fastest" })
  t.eq(err, "load balancing: unknown strategy Fastest")
end

function T.a_hash_key_keeps_its_endpoint_and_only_the_gone_ones_keys_move()
  local eps = endpoints(5)
  local before = {}
  for i = 1, 200 do before[i] = strategies.by_hash(eps, "user-" .. i, never) end
  for i = 1, 200 do
    t.eq(strategies.by_hash(eps, "user-" .. i, never), before[i], "the same key, the same endpoint")
  end
  local used = {}
  for _, ep in ipairs(before) do used[ep.addr] = true end
  t.eq(#eps, 5)
  local count = 0
  for _ in pairs(used) do count = count + 1 end
  t.eq(count, 5, "200 keys spread over every endpoint")
  -- endpoint 3 leaves the rotation: only its keys move
  local gone = eps[3]
  local function out(ep) return ep == gone end
  for i = 1, 200 do
    local now = strategies.by_hash(eps, "user-" .. i, out)
    if before[i] ~= gone then t.eq(now, before[i], "key " .. i .. " stays") end
    t.truthy(now ~= gone)
  end
end

function T.least_request_takes_the_one_with_fewer_in_flight()
  local eps = endpoints(2)
  local counts = { ["10.0.0.1"] = 7, ["10.0.0.2"] = 3 }
  local function count(ep) return counts[ep.addr] end
  local draws = { 1, 1 }
  local function index() return table.remove(draws, 1) end
  t.eq(strategies.least_request(eps, never, index, count).addr, "10.0.0.2",
    "the second draw is another endpoint")
  draws = { 2, 1 }
  t.eq(strategies.least_request(eps, never, index, count).addr, "10.0.0.2")
  counts["10.0.0.2"] = 7
  draws = { 2, 1 }
  t.eq(strategies.least_request(eps, never, index, count).addr, "10.0.0.2", "a tie: the first")
  draws = { 1, 1 }
  local function skip(ep) return ep.addr == "10.0.0.2" end
  t.eq(strategies.least_request(eps, skip, index, count).addr, "10.0.0.1", "one skipped")
end

function T.slow_start_grows_a_share_linearly()
  t.eq(strategies.share(nil, 10, 100), 1, "no arrival known: full share")
  t.eq(strategies.share(100, 10, 100), 0.05, "just arrived: the minimum")
  t.eq(strategies.share(100, 10, 105), 0.5)
  t.eq(strategies.share(100, 10, 111), 1)
end

function T.arrivals_are_noted_once_and_forgotten_when_gone()
  local dict = ngx.shared.agc_inflight
  local eps = endpoints(2)
  local target = { endpoints = eps, lb = { slow_start = 10 } }
  strategies.note_arrivals(target, nil, 1000)
  strategies.note_arrivals(target, nil, 2000)
  t.eq(dict:get("s|b|10.0.0.1"), 1000, "the first arrival stays")
  strategies.note_arrivals({ endpoints = { eps[1] }, lb = target.lb }, target, 3000)
  t.eq(dict:get("s|b|10.0.0.2"), nil, "gone: forgotten")
  strategies.note_arrivals(nil, { endpoints = { eps[1] } }, 4000)
  t.eq(dict:get("s|b|10.0.0.1"), nil, "backend gone: all forgotten")
end

function T.in_flight_slots_are_taken_up_to_the_maximum_and_given_back()
  local key = "b|test-" .. ngx.now()
  t.eq(strategies.take(key, 2), "taken")
  t.eq(strategies.take(key, 2), "taken")
  t.eq(strategies.take(key, 2), "full")
  strategies.give_back(key)
  t.eq(strategies.take(key, 2), "taken")
  t.eq(ngx.shared.agc_inflight:get(key), 2, "a refused request holds no slot")
end

function T.slow_start_passes_over_a_warming_endpoint_by_chance()
  local eps = endpoints(2)
  local dict = ngx.shared.agc_inflight
  dict:set("s|" .. eps[2].health_key, ngx.now())
  local lb = { slow_start = 1000 }
  local skip = strategies.with_slow_start(lb, never, function() return 0.5 end, ngx.now())
  t.falsy(skip(eps[1]), "warmed up")
  t.truthy(skip(eps[2]), "5 % share: a draw of 0.5 passes it over")
  local picked = balancer.next_in_rotation("ss", eps, function() return 1 end, skip)
  t.eq(picked.addr, "10.0.0.1")
  dict:delete("s|" .. eps[2].health_key)
end

return T
