-- The control endpoint (a unix socket only the controller can reach):
-- PATCH /config with an update of some parts of the state (config.apply_delta),
-- PUT /config with the whole state as one document; GET /config returns the version;
-- GET /static the id of the static configuration the answering worker runs.
local config = require("agc.config")

local _M = {}

function _M.handle()
  local method = ngx.req.get_method()
  if method == "GET" then
    ngx.say(ngx.shared.agc_config:get("version") or 0)
    return
  end
  if method ~= "PUT" and method ~= "PATCH" then return ngx.exit(405) end
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
  local store = method == "PATCH" and config.store_delta or config.store
  local version, err = store(body)
  if not version then
    ngx.status = 400
    ngx.say(err)
    return
  end
  ngx.say(version)
end

function _M.static()
  ngx.say(config.static_id())
end

return _M
