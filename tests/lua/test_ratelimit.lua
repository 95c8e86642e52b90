-- Rate limits (agc.ratelimit): the token bucket's arithmetic and its shared dict,
-- and the count of each key's requests in flight (concurrency).
local t = require("t")
local ratelimit = require("agc.ratelimit")
local router = require("agc.router")

local function limit(requests, period_s, burst, bucket)
  return ratelimit.compile({
    bucket = bucket or "default/policy|Gateway/default/gw",
    requests = requests,
    period_s = period_s,
    burst = burst,
  })
end

-- A key never used before (the dict outlives one test).
local counter = 0
local function fresh_key(l)
  counter = counter + 1
  return l.prefix .. "client-" .. counter .. "-" .. ngx.now()
end

local T = {}

function T.a_burst_goes_through_at_once_then_the_rate_holds()
  local l = limit(10, 1, 3)
  local key = fresh_key(l)
  local now = 1000
  for i = 1, 3 do
    local admitted, headers = ratelimit.take(l, key, now)
    t.truthy(admitted, "request " .. i .. " of the burst")
    t.eq(headers["RateLimit-Remaining"], 3 - i, "remaining after request " .. i)
  end
  local admitted, headers, wait = ratelimit.take(l, key, now)
  t.falsy(admitted, "the request after the burst")
  t.eq(headers["RateLimit-Remaining"], 0)
  t.eq(wait, 1, "Retry-After is at least one second")
  -- one interval (0.1 s) later exactly one more fits
  t.truthy((ratelimit.take(l, key, now + 0.1)), "one interval later")
  t.falsy((ratelimit.take(l, key, now + 0.1)), "and only one")
end

function T.sustained_traffic_gets_exactly_the_rate()
  local l = limit(10, 1, 1)
  local key = fresh_key(l)
  local admitted = 0
  -- 1,000 requests evenly over 10 seconds: 10 a second pass
  for i = 0, 999 do
    if ratelimit.take(l, key, 2000 + i * 0.01) then admitted = admitted + 1 end
  end
  t.eq(admitted, 100)
end

function T.refused_requests_do_not_count()
  local l = limit(1, 60, 1)
  local key = fresh_key(l)
  local now = 3000
  t.truthy((ratelimit.take(l, key, now)))
  for _ = 1, 50 do
    local admitted, _, wait = ratelimit.take(l, key, now + 1)
    t.falsy(admitted)
    t.eq(wait, 59, "a minute's budget: wait out the rest of the minute")
  end
  t.truthy((ratelimit.take(l, key, now + 60)), "a refused request never delays the next")
end

function T.buckets_and_keys_are_independent()
  local a, b = limit(1, 3600, 1, "ns/a|HTTPRoute/ns/r"), limit(1, 3600, 1, "ns/b|HTTPRoute/ns/r")
  local now = 4000 + ngx.now()
  t.truthy((ratelimit.take(a, a.prefix .. "k1", now)))
  t.falsy((ratelimit.take(a, a.prefix .. "k1", now)), "k1 spent its budget")
  t.truthy((ratelimit.take(a, a.prefix .. "k2", now)), "k2 has its own")
  t.truthy((ratelimit.take(b, b.prefix .. "k1", now)), "another policy has its own")
end

function T.reset_says_when_the_bucket_is_full_again()
  local l = limit(2, 60, 2)
  local key = fresh_key(l)
  local _, headers = ratelimit.take(l, key, 5000)
  t.eq(headers["RateLimit-Reset"], 30, "one request of two a minute: 30 s of debt")
  t.eq(headers["RateLimit-Limit"], 2)
  t.eq(headers["RateLimit-Policy"], "2;w=60;burst=2")
end

function T.a_header_key_reads_the_header_variable()
  local l = ratelimit.compile({
    bucket = "b", requests = 1, period_s = 1, burst = 1, header = "X-Api-Key",
  })
  t.eq(l.var, "http_x_api_key")
end

local function concurrency(n, extra)
  local spec = { bucket = "default/in-flight|HTTPRoute/default/r", concurrency = n }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return assert(ratelimit.compile(spec))
end

local function in_flight(slot)
  return ngx.shared.agc_inflight:get(slot)
end

-- ngx.exit stubbed: what check answered with, instead of ending the test's request
local function checked(l, ctx)
  local real, status = ngx.exit, nil
  ngx.exit = function(s) status = s end
  local ok, passed = pcall(ratelimit.check, l, ctx)
  ngx.exit = real
  assert(ok, passed)
  return passed, status
end

function T.compile_takes_a_concurrency_alone_or_with_a_rate()
  local alone = concurrency(3)
  t.eq(alone.concurrency, 3)
  t.eq(alone.interval, nil, "no rate: no bucket")
  local both = concurrency(3, { requests = 10, period_s = 1, burst = 10 })
  t.eq(both.concurrency, 3)
  t.eq(both.policy, "10;w=1;burst=10")
  local none, err = ratelimit.compile({ bucket = "b" })
  t.eq(none, nil)
  t.eq(err, "rate limit: neither a rate nor a concurrency")
  none, err = ratelimit.compile({ bucket = "b", concurrency = 0 })
  t.eq(none, nil)
  t.eq(err, "rate limit: concurrency must be a number of at least 1")
end

function T.a_key_has_at_most_its_concurrency_in_flight_and_a_slot_given_back_is_free_again()
  local l = concurrency(2)
  local key = fresh_key(l)
  local ok1, a = ratelimit.enter(l, key)
  local ok2, b = ratelimit.enter(l, key)
  t.truthy(ok1 and ok2, "two in flight")
  t.eq(a, b, "one count per key")
  t.eq(in_flight(a), 2)
  t.falsy((ratelimit.enter(l, key)), "a third is refused")
  t.eq(in_flight(a), 2, "a refused request takes nothing")
  t.truthy((ratelimit.enter(l, fresh_key(l))), "another key has its own count")
  ratelimit.leave(a)
  local ok3 = ratelimit.enter(l, key)
  t.truthy(ok3, "a slot given back is taken again")
  ratelimit.leave(a)
  ratelimit.leave(a)
  t.eq(in_flight(a), nil, "a key with nothing in flight leaves the dict")
  ratelimit.leave(a)
  t.eq(in_flight(a), nil, "a slot given back twice never makes the count negative")
end

function T.check_takes_the_slot_into_the_context_and_refuses_a_full_key_with_429()
  local l = concurrency(1)
  local first = {}
  local passed, status = checked(l, first)
  t.truthy(passed)
  t.eq(status, nil)
  t.truthy(first.limit_slot, "the slot the log phase gives back")
  t.eq(first.limit_headers, nil, "no rate: no RateLimit headers")
  local second = {}
  passed, status = checked(l, second)
  t.falsy(passed)
  t.eq(status, 429)
  t.eq(second.limit_slot, nil, "a refused request holds no slot")
  ratelimit.leave(first.limit_slot)
end

function T.a_request_refused_by_the_rate_holds_its_slot_until_the_log_phase()
  -- one request a minute, two in flight: the second request is refused by the
  -- rate, but has its slot (given back once it is answered, by the log phase)
  local l = concurrency(2, { requests = 1, period_s = 60, burst = 1, bucket = "rate+" .. ngx.now() })
  local first, second = {}, {}
  t.truthy((checked(l, first)))
  t.truthy(first.limit_headers, "the rate's headers")
  local passed, status = checked(l, second)
  t.falsy(passed)
  t.eq(status, 429)
  t.truthy(second.limit_slot, "taken before the rate refused it")
  t.eq(in_flight(first.limit_slot), 2)
  ratelimit.leave(second.limit_slot)
  ratelimit.leave(first.limit_slot)
  t.eq(in_flight(first.limit_slot), nil)
end

function T.a_refused_concurrency_spends_nothing_of_the_rate()
  local l = concurrency(1, { requests = 1, period_s = 60, burst = 1, bucket = "both+" .. ngx.now() })
  local slot = select(2, ratelimit.enter(l, l.prefix .. (ngx.var.binary_remote_addr or "")))
  local refused = {}
  local _, status = checked(l, refused)
  t.eq(status, 429)
  t.eq(ngx.shared.agc_ratelimit:get(l.prefix .. (ngx.var.binary_remote_addr or "")), nil,
    "the rate's bucket was not touched")
  ratelimit.leave(slot)
  t.truthy((checked(l, refused)), "the key's one request a minute is still there")
  ratelimit.leave(refused.limit_slot)
end

function T.the_log_phase_gives_the_slot_back()
  local l = concurrency(1)
  local ctx = ngx.ctx
  local key = fresh_key(l)
  local _, slot = ratelimit.enter(l, key)
  ctx.limit_slot = slot
  router.log()
  t.eq(in_flight(slot), nil)
  t.truthy((ratelimit.enter(l, key)), "free again")
  ratelimit.leave(slot)
  ctx.limit_slot = nil
end

return T
