-- Request counters (agc.metrics): what one request adds, and the snapshot the
-- control socket serves (exported by metrics.py).
local t = require("t")
local metrics = require("agc.metrics")

local dict = ngx.shared.agc_metrics

local function rows_by_key()
  metrics.flush()
  local out = {}
  for _, row in ipairs(metrics.snapshot().rows) do
    out[table.concat(row, "|", 1, #row - 1)] = row[#row]
  end
  return out
end

local T = {}

function T.a_request_counts_once_by_route_backend_and_class_and_in_one_bucket()
  dict:flush_all()
  metrics.observe("ns/web", "ns/svc:80", 200, 0.02, false)
  metrics.observe("ns/web", "ns/svc:80", 204, 0.003, false)
  local rows = rows_by_key()
  t.eq(rows["r|ns/web|ns/svc:80|2"], 2, "two 2xx answers")
  t.eq(rows["b|ns/web|3"], 1, "0.02 s falls in the third bucket (<= 0.025)")
  t.eq(rows["b|ns/web|1"], 1, "0.003 s in the first (<= 0.005)")
  t.eq(rows["s|ns/web"], 0.023, "the sum of the durations")
  t.eq(rows["e|ns/web|ns/svc:80"], nil, "no upstream error")
end

function T.a_failed_backend_is_an_upstream_error()
  dict:flush_all()
  metrics.observe("ns/web", "ns/svc:80", 503, 0.001, true)
  metrics.observe("ns/web", "ns/svc:80", 502, 30, true)
  local rows = rows_by_key()
  t.eq(rows["e|ns/web|ns/svc:80"], 2)
  t.eq(rows["r|ns/web|ns/svc:80|5"], 2)
  t.eq(rows["b|ns/web|12"], 1, "30 s is above every bound")
end

function T.an_answer_of_the_routers_own_has_no_backend_and_no_upstream_error()
  dict:flush_all()
  metrics.observe(nil, nil, 404, 0, false)
  metrics.observe("ns/web", nil, 429, 0, false)
  local rows = rows_by_key()
  t.eq(rows["r|||4"], 1, "no route, no backend")
  t.eq(rows["r|ns/web||4"], 1, "a route and no backend")
  t.eq(rows["e|ns/web|"], nil)
end

function T.counts_reach_the_shared_dict_only_when_the_worker_flushes()
  dict:flush_all()
  metrics.observe("ns/web", "ns/svc:80", 200, 0.02, false)
  metrics.observe("ns/web", "ns/svc:80", 200, 0.02, false)
  t.eq(dict:get("r\tns/web\tns/svc:80\t2"), nil, "still the worker's own")
  metrics.flush()
  t.eq(dict:get("r\tns/web\tns/svc:80\t2"), 2)
  metrics.observe("ns/web", "ns/svc:80", 200, 0.02, false)
  metrics.flush()
  metrics.flush()
  t.eq(dict:get("r\tns/web\tns/svc:80\t2"), 3, "each count added once")
end

function T.the_snapshot_carries_the_bounds_and_the_connection_counts()
  local snapshot = metrics.snapshot()
  t.eq(#snapshot.buckets, 11)
  t.eq(snapshot.buckets[1], 0.005)
  t.truthy(snapshot.connections.active >= 1, "this request's own connection")
end

return T
