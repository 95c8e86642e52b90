-- The control endpoint (a unix socket only the controller can reach):
-- PATCH /config with an update of some parts of the state (config.apply_delta),
-- PUT /config with the whole state as one document; GET /config returns the version;
-- GET /static the id of the static configuration the answering worker runs;
-- PUT /drain?seconds=N drain mode for N seconds (0: off), see router.route;
-- GET /metrics the request counters (agc.metrics);
-- PUT /mesh the gateway's mesh workload certificate (agc.mesh).
local cjson = require("cjson.safe")
local config = require("agc.config")
local mesh = require("agc.mesh")
local metrics = require("agc.metrics")

local _M = {}

-- Read the request's body and hand it to `keep`; answer its version, or 400 and why.
local function store(keep)
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      body = f:read("*a")
      f:close()
    end
  end
  if not body then
    ngx.status = 400
    ngx.say("empty body")
    return
  end
  local version, err = keep(body)
  if not version then
    ngx.status = 400
    ngx.say(err)
    return
  end
  ngx.say(version)
end

function _M.handle()
  local method = ngx.req.get_method()
  if method == "GET" then
    ngx.say(ngx.shared.agc_config:get("version") or 0)
    return
  end
  if method ~= "PUT" and method ~= "PATCH" then return ngx.exit(405) end
  store(method == "PATCH" and config.store_delta or config.store)
end

function _M.mesh()
  if ngx.req.get_method() ~= "PUT" then return ngx.exit(405) end
  store(mesh.store)
end

function _M.static()
  ngx.say(config.static_id())
end

function _M.metrics()
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(metrics.snapshot()))
end

function _M.drain()
  if ngx.req.get_method() ~= "PUT" then return ngx.exit(405) end
  local seconds = tonumber(ngx.var.arg_seconds)
  if not seconds or seconds < 0 or seconds > 60 then
    ngx.status = 400
    ngx.say("seconds must be a number from 0 to 60")
    return
  end
  config.set_draining(seconds)
  ngx.say("draining" .. (seconds > 0 and "" or " off"))
end

return _M
