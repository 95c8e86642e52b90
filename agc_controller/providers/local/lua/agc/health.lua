-- Health checks (HealthCheckPolicy): a backend's check compiled, one probe,
-- what a probe's outcome does to an endpoint, and which endpoints are out.
--
-- Whether an endpoint is out lives in the shared dict agc_health (key: backend
-- id | address:port), written by the prober (agc.prober) and read by every
-- worker's balancer. An endpoint is in until `unhealthy` probes fail in a row,
-- then out until `healthy` pass in a row.
local filters = require("agc.filters")

local _M = {}

-- the data plane's control socket ("unix:<path>"), whose /grpc-health location
-- (static.py) sends a gRPC probe on as HTTP/2: set by init_by_lua
local control_socket
function _M.set_control_socket(path) control_socket = path end

-- grpc.health.v1 on the wire: a HealthCheckRequest's service is field 1 (tag
-- 0x0a, a one-byte length: at most 127), framed as gRPC frames a message (no
-- compression flag, a 4-byte length); an answer of SERVING is the frame holding
-- field 1 = 1
local SERVING = "\0\0\0\0\2\8\1"
local function grpc_request(service)
  local message = service == "" and "" or ("\10" .. string.char(#service) .. service)
  return "\0\0\0\0" .. string.char(#message) .. message
end

-- Only characters a request line and a Host header allow (the controller
-- checks the same; this keeps a bad state from writing a bad request).
local HOST_CHARS = "^[%w%-%.]+$"

function _M.compile(h)
  if h == nil then return nil end
  local protocol = h.protocol
  if protocol ~= "HTTP" and protocol ~= "HTTPS" and protocol ~= "TCP" and protocol ~= "GRPC" then
    return nil, "health check: unsupported protocol " .. tostring(protocol)
  end
  local c = {
    protocol = protocol,
    interval = h.interval_ms / 1000,
    timeout = h.timeout_ms / 1000,
    healthy = h.healthy_threshold,
    unhealthy = h.unhealthy_threshold,
    port = h.port,
    host = h.host,
    status_codes = h.status_codes or { { 200, 399 } },
  }
  if protocol == "GRPC" then
    local service = h.grpc_service or ""
    if #service > 127 or not service:match("^[%w_%.]*$") then
      return nil, "health check: invalid gRPC service"
    end
    c.body = grpc_request(service)
  elseif protocol ~= "TCP" then
    if not filters.is_request_path(h.path) then
      return nil, "health check: invalid path"
    end
    if not (h.host and h.host:match(HOST_CHARS)) then
      return nil, "health check: invalid host"
    end
    c.request = "GET " .. h.path .. " HTTP/1.1\r\nHost: " .. h.host ..
      "\r\nUser-Agent: agc-controller-health\r\nConnection: close\r\n\r\n"
  end
  return c
end

-- The key of one endpoint of backend `id` in agc_health.
function _M.key(id, ep)
  return id .. "|" .. ep.addr .. ":" .. ep.port
end

-- Passive ejection of a backend, compiled (nil: none).
function _M.compile_passive(p)
  if p == nil then return nil end
  return { failures = p.consecutive_failures, ejection = p.ejection_ms / 1000 }
end

-- One answer of the endpoint with key `key` (failed: 5xx, or none) under passive
-- ejection `passive`: `failures` failed in a row take it out for `ejection`
-- seconds (the mark expires by itself). The count lives in agc_health under
-- "p|<key>"; a success costs one read when there is no count.
function _M.observe(key, failed, passive)
  local dict = ngx.shared.agc_health
  local count_key = "p|" .. key
  if not failed then
    if dict:get(count_key) then dict:delete(count_key) end
    return
  end
  local n = dict:incr(count_key, 1, 0, passive.ejection)
  if n and n >= passive.failures then
    dict:delete(count_key)
    if not dict:get(key) then
      dict:set(key, "ejected", passive.ejection)
      ngx.log(ngx.WARN, "agc: endpoint ", key, " is out for ", passive.ejection,
        " s after ", n, " failed answers in a row")
    end
  end
end

-- Whether the endpoint with key `key` is out of the rotation.
function _M.out(key)
  return ngx.shared.agc_health:get(key) ~= nil
end

-- Whether `status` passes `check`.
function _M.status_passes(check, status)
  for _, r in ipairs(check.status_codes) do
    if status >= r[1] and status <= r[2] then return true end
  end
  return false
end

-- One probe's outcome on an endpoint's record: "out" or "in" when it moves it,
-- nil when it stays where it was.
function _M.record(rec, passed, check)
  if passed then
    rec.fails, rec.passes = 0, rec.passes + 1
    if rec.out and rec.passes >= check.healthy then
      rec.out = false
      return "in"
    end
  else
    rec.passes, rec.fails = 0, rec.fails + 1
    if not rec.out and rec.fails >= check.unhealthy then
      rec.out = true
      return "out"
    end
  end
  return nil
end

-- A gRPC probe: through the control socket, whose location speaks HTTP/2 to the
-- endpoint; true when the answer holds SERVING.
local function probe_grpc(check, sock, addr, port)
  local target = addr:find(":", 1, true) and ("[" .. addr .. "]:" .. port) or (addr .. ":" .. port)
  local sent, serr = sock:send("POST /grpc-health HTTP/1.1\r\nHost: agc\r\nX-AGC-Target: " ..
    target .. "\r\nContent-Type: application/grpc\r\nContent-Length: " .. #check.body ..
    "\r\nConnection: close\r\n\r\n" .. check.body)
  if not sent then return false, "send: " .. tostring(serr) end
  local answer, rerr = sock:receive("*a")
  if not answer then return false, "receive: " .. tostring(rerr) end
  if answer:find(SERVING, 1, true) then return true end
  local status = answer:match("[Gg]rpc%-[Ss]tatus: *(%d+)")
  if status then return false, "grpc-status " .. status end
  return false, "not SERVING (" .. (answer:match("^HTTP/%d%.%d (%d%d%d)") or "no answer") .. ")"
end

-- Probe addr:port once; true, or false and why not. Every step shares the
-- timeout: the probe ends by then, whatever it was doing.
function _M.probe(check, addr, port)
  local deadline = ngx.now() + check.timeout
  local sock = ngx.socket.tcp()
  local function left()
    local ms = (deadline - ngx.now()) * 1000
    if ms < 1 then ms = 1 end
    sock:settimeout(ms)
  end
  left()
  if check.protocol == "GRPC" then
    local ok, err = sock:connect(control_socket)
    if not ok then return false, "connect: " .. tostring(err) end
    local passed, why = probe_grpc(check, sock, addr, port)
    sock:close()
    return passed, why
  end
  local ok, err = sock:connect(addr, port)
  if not ok then return false, "connect: " .. tostring(err) end
  if check.protocol == "TCP" then
    sock:close()
    return true
  end
  if check.protocol == "HTTPS" then
    left()
    local session, terr = sock:sslhandshake(nil, check.host, false)
    if not session then
      sock:close()
      return false, "tls: " .. tostring(terr)
    end
  end
  left()
  local sent, serr = sock:send(check.request)
  if not sent then
    sock:close()
    return false, "send: " .. tostring(serr)
  end
  left()
  local line, rerr = sock:receive("*l")
  sock:close()
  if not line then return false, "receive: " .. tostring(rerr) end
  local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then return false, "not an HTTP status line" end
  if _M.status_passes(check, status) then return true end
  return false, "status " .. status
end

return _M
