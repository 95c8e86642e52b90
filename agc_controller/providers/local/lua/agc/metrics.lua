-- Request metrics of this NGINX (one Gateway's HTTP traffic), counted in the log
-- phase and read whole by the control socket's GET /metrics, which the agent (in
-- a pod) or the controller (on this host) exports in Prometheus' format with the
-- Gateway's name (metrics.py).
--
-- A request only adds to its worker's own table; every FLUSH seconds (and when
-- the worker exits) the worker adds its table to the shared dict agc_metrics.
-- The shared dict takes a lock shared by the workers for every change, and the
-- request path is the one place that must stay cheap: a scrape sees the counts
-- up to FLUSH seconds late, never lost.
--
-- Keys, tab-separated ("\t" cannot occur in a route or backend name):
--   r <route> <backend> <status class>   requests answered
--   e <route> <backend>                  of those, the backend's failures (a 5xx
--                                        answer, or none: connect error, timeout)
--   b <route> <bucket index>             request durations (not cumulative)
--   s <route>                            their sum, in seconds
-- <route> is the matched route's "namespace/name", empty when none matched;
-- <backend> the chosen backend's id, empty when none was chosen (a redirect, or
-- an answer of the router's own: 404, 429, 403...). Counters only grow; a full
-- dict drops its least recently used keys (the size is in static.py).
local _M = {}

local dict = ngx.shared.agc_metrics
local ngx_var = ngx.var

local FLUSH = 1
-- this worker's counts since its last flush, by key
local pending = {}

local function add(key, n)
  pending[key] = (pending[key] or 0) + n
end

-- seconds; the exporter adds +Inf
_M.BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local BUCKETS = _M.BUCKETS

local function bucket(seconds)
  for i = 1, #BUCKETS do
    if seconds <= BUCKETS[i] then return i end
  end
  return #BUCKETS + 1
end

-- `failed`: a backend was tried and failed the request (a 5xx answer, or none).
function _M.observe(route, backend, status, seconds, failed)
  route = route or ""
  backend = backend or ""
  local class = math.floor(status / 100)
  if class < 1 or class > 5 then class = 5 end
  local pair = route .. "\t" .. backend
  add("r\t" .. pair .. "\t" .. class, 1)
  if failed then add("e\t" .. pair, 1) end
  add("b\t" .. route .. "\t" .. bucket(seconds), 1)
  add("s\t" .. route, seconds)
end

-- Add this worker's counts to the shared dict.
function _M.flush()
  local counts = pending
  pending = {}
  for key, n in pairs(counts) do
    local ok, err = dict:incr(key, n, 0)
    if not ok then ngx.log(ngx.WARN, "agc: request metrics: ", err) end
  end
end

-- init_worker: flush every FLUSH seconds, and once more as the worker exits (a
-- reload's old workers included).
function _M.start()
  local ok, err = ngx.timer.every(FLUSH, function() _M.flush() end)
  if not ok then ngx.log(ngx.ERR, "agc: request metrics not flushed: ", err) end
end

-- Every counter, as {kind, fields..., value} rows, and the connection gauges.
function _M.snapshot()
  local rows = {}
  for _, key in ipairs(dict:get_keys(0)) do
    local value = dict:get(key)
    if value then
      local row = {}
      for field in (key .. "\t"):gmatch("([^\t]*)\t") do row[#row + 1] = field end
      row[#row + 1] = value
      rows[#rows + 1] = row
    end
  end
  return {
    rows = rows,
    buckets = BUCKETS,
    connections = {
      active = tonumber(ngx_var.connections_active) or 0,
      reading = tonumber(ngx_var.connections_reading) or 0,
      writing = tonumber(ngx_var.connections_writing) or 0,
      waiting = tonumber(ngx_var.connections_waiting) or 0,
    },
  }
end

return _M
