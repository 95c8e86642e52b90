-- Health checks (agc.health, agc.balancer): compiling a check, what probes do to
-- an endpoint, and how the balancer passes over endpoints that are out.
local t = require("t")
local health = require("agc.health")
local balancer = require("agc.balancer")

local function check(over)
  local h = {
    protocol = "HTTP", interval_ms = 500, timeout_ms = 250, healthy_threshold = 2,
    unhealthy_threshold = 3, host = "localhost", path = "/healthz?full=1",
    status_codes = { { 200, 299 }, { 418, 418 } },
  }
  for k, v in pairs(over or {}) do h[k] = v end
  return health.compile(h)
end

local T = {}

function T.a_check_compiles_to_its_probe_request()
  local c = check()
  t.eq(c.interval, 0.5)
  t.eq(c.timeout, 0.25)
  t.eq(c.request, "GET /healthz?full=1 HTTP/1.1\r\nHost: localhost\r\n" ..
    "User-Agent: agc-controller-health\r\nConnection: close\r\n\r\n")
  t.eq(check({ protocol = "TCP", path = nil, host = nil }).request, nil, "TCP sends nothing")
end

function T.nothing_that_could_break_the_request_line_compiles()
  for _, path in ipairs({ "/a b", "/a\r\nX: y", "nope", "/%0d\n" }) do
    local c, err = check({ path = path })
    t.eq(c, nil, path)
    t.eq(err, "health check: invalid path")
  end
  local c, err = check({ host = "a\r\nb" })
  t.eq(c, nil)
  t.eq(err, "health check: invalid host")
  c, err = check({ protocol = "UDP" })
  t.eq(c, nil)
  t.eq(err, "health check: unsupported protocol UDP")
  c, err = check({ protocol = "GRPC", grpc_service = "a b" })
  t.eq(c, nil)
  t.eq(err, "health check: invalid gRPC service")
end

function T.a_grpc_check_is_a_framed_health_check_request()
  -- the whole server: an empty HealthCheckRequest; a service: field 1, its name
  t.eq(check({ protocol = "GRPC" }).body, "\0\0\0\0\0")
  t.eq(check({ protocol = "GRPC", grpc_service = "agc.test.Echo" }).body,
    "\0\0\0\0\15\10\13agc.test.Echo")
  t.eq(check({ protocol = "GRPC", grpc_service = string.rep("s", 128) }), nil, "too long")
end

function T.status_ranges_decide()
  local c = check()
  t.truthy(health.status_passes(c, 200))
  t.truthy(health.status_passes(c, 418))
  t.falsy(health.status_passes(c, 300))
  t.falsy(health.status_passes(c, 500))
end

function T.thresholds_take_an_endpoint_out_and_back()
  local c = check()
  local rec = { passes = 0, fails = 0, out = false }
  t.eq(health.record(rec, false, c), nil)
  t.eq(health.record(rec, false, c), nil)
  t.eq(health.record(rec, true, c), nil, "a pass resets the failures")
  t.eq(health.record(rec, false, c), nil)
  t.eq(health.record(rec, false, c), nil)
  t.eq(health.record(rec, false, c), "out", "the third failure in a row")
  t.eq(health.record(rec, false, c), nil, "already out")
  t.eq(health.record(rec, true, c), nil)
  t.eq(health.record(rec, true, c), "in", "the second pass in a row")
end

function T.the_balancer_passes_over_endpoints_that_are_out()
  local eps = { { addr = "a" }, { addr = "b" }, { addr = "c" } }
  local out = { b = true }
  local function is_out(ep) return out[ep.addr] == true end
  local function first() return 1 end -- the turns start after endpoint 1
  local got = {}
  for i = 1, 4 do got[i] = balancer.next_in_rotation("hc-1", eps, first, is_out).addr end
  t.eq(got, { "c", "a", "c", "a" })
  out = { a = true, b = true, c = true }
  local panic = {}
  for i = 1, 3 do panic[i] = balancer.next_in_rotation("hc-2", eps, first, is_out).addr end
  t.eq(panic, { "b", "c", "a" }, "every endpoint out: all of them take turns")
end

function T.passive_ejection_counts_failures_in_a_row()
  local passive = health.compile_passive({ consecutive_failures = 3, ejection_ms = 2000 })
  t.eq(passive, { failures = 3, ejection = 2 })
  local key = "ns/svc:80|10.9.9.9:80"
  local dict = ngx.shared.agc_health
  health.observe(key, true, passive)
  health.observe(key, true, passive)
  health.observe(key, false, passive)
  t.falsy(health.out(key), "a success resets the count")
  health.observe(key, true, passive)
  health.observe(key, true, passive)
  t.falsy(health.out(key))
  health.observe(key, true, passive)
  t.truthy(health.out(key), "the third failure in a row")
  t.eq(dict:get(key), "ejected")
  t.eq(dict:get("p|" .. key), nil, "the count starts over")
  local ttl = dict:ttl(key)
  t.truthy(ttl > 1.5 and ttl <= 2, "out for the ejection time, then back by itself")
  dict:delete(key)
end

function T.out_marks_are_read_from_the_shared_dict()
  local key = health.key("ns/svc:80", { addr = "10.0.0.1", port = 8080 })
  t.eq(key, "ns/svc:80|10.0.0.1:8080")
  t.falsy(health.out(key))
  ngx.shared.agc_health:set(key, true, 1)
  t.truthy(health.out(key))
  ngx.shared.agc_health:delete(key)
end

return T
