-- balancer_by_lua: pick the endpoint of the backend the router chose.
-- Session persistence: a cookie names the endpoint; while that endpoint is
-- still in the backend it is kept, otherwise a new one is picked and named.
local balancer = require("ngx.balancer")
local config = require("agc.config")
local ctxstash = require("agc.ctxstash")

local _M = {}
local next_index = {}

function _M.run()
  local state = config.get()
  local ctx = ctxstash.get()
  local id = ctx.backend
  local target = state and id and state.backends[id]
  if not target or #target.endpoints == 0 then
    return ngx.exit(503)
  end
  local endpoints = target.endpoints
  local retry = ctx.retry
  -- nil on a location's first try; then NGINX is retrying a connection failure,
  -- which counts against the attempts the retries on status codes share
  local state_name = balancer.get_last_failure()
  if retry then
    if state_name == nil then
      local remaining = retry.attempts - (ctx.retries or 0)
      if remaining > 0 then balancer.set_more_tries(remaining) end
    else
      ctx.retries = (ctx.retries or 0) + 1
    end
  end
  local chosen
  local session = ctx.session
  -- a retry must leave the endpoint that just failed, cookie or not
  if session and session.type == "Cookie" and state_name == nil then
    local wanted = ngx.var["cookie_" .. session.name]
    if wanted then chosen = target.by_id[wanted] end
  end
  if not chosen then
    local i = (next_index[id] or math.random(#endpoints)) % #endpoints + 1
    next_index[id] = i
    chosen = endpoints[i]
    if session and session.type == "Cookie" then
      local cookie = session.name .. "=" .. chosen.id .. "; Path=/; HttpOnly"
      if session.absolute_timeout_s then cookie = cookie .. "; Max-Age=" .. session.absolute_timeout_s end
      ctx.set_cookie = cookie
    end
  end
  local ok, err = balancer.set_current_peer(chosen.addr, chosen.port)
  if not ok then
    ngx.log(ngx.ERR, "agc: set_current_peer failed: ", err)
    return ngx.exit(502)
  end
  local timeout = ctx.timeout_ms
  if timeout and timeout > 0 then
    balancer.set_timeouts(timeout / 1000, timeout / 1000, timeout / 1000)
  end
end

return _M
