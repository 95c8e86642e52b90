-- Rate limits (agc.ratelimit): the token bucket's arithmetic and its shared dict.
local t = require("t")
local ratelimit = require("agc.ratelimit")

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

return T
