-- Per-request routing (access phase): listener → host → first matching rule
-- (rules arrive in Gateway API precedence order) → filters → a weighted
-- backend, whose id the balancer reads from the request context.
local config = require("agc.config")
local ctxstash = require("agc.ctxstash")

local _M = {}

local ngx_var, ngx_req, re_find = ngx.var, ngx.req, ngx.re.find

local function header_value(headers, name)
  local v = headers[name]
  if type(v) == "table" then return table.concat(v, ",") end
  return v
end

local function value_matches(kind, expected, actual)
  if actual == nil then return false end
  if kind == "Exact" then return actual == expected end
  return re_find(actual, expected, "jo") ~= nil
end

local function path_matches(rule, path)
  local t = rule.path_type
  if t == "Exact" then return path == rule.path end
  if t == "PathPrefix" then
    local p = rule.prefix
    if p == "/" then return true end
    if path == p then return true end
    return path:sub(1, #p + 1) == p .. "/"
  end
  return re_find(path, rule.regex, "jo") ~= nil
end

-- Request headers and query arguments are parsed only when a candidate rule
-- matches on them (most rules do not), and then once per request.
local function rule_matches(rule, path, method, req)
  if not path_matches(rule, path) then return false end
  if rule.method and rule.method ~= method then return false end
  if #rule.headers > 0 then
    req.headers = req.headers or ngx_req.get_headers(100)
  end
  for _, h in ipairs(rule.headers) do
    if not value_matches(h[1], h[3], header_value(req.headers, h[2])) then return false end
  end
  if #rule.query > 0 then
    req.args = req.args or ngx_req.get_uri_args(100)
  end
  for _, q in ipairs(rule.query) do
    local v = req.args[q[2]]
    if type(v) == "table" then v = v[1] end
    if v == true then v = "" end
    if not value_matches(q[1], q[3], v) then return false end
  end
  return true
end

local function apply_request_headers(m)
  if not m then return end
  for _, p in ipairs(m.set) do ngx_req.set_header(p[1], p[2]) end
  for _, p in ipairs(m.add) do
    local existing = ngx_req.get_headers()[p[3]]
    if type(existing) == "table" then existing = table.concat(existing, ",") end
    ngx_req.set_header(p[1], existing and (existing .. "," .. p[2]) or p[2])
  end
  for _, name in ipairs(m.remove) do ngx_req.clear_header(name) end
end

-- The port the client connected to. Behind a plain port's protocol sniffer the
-- server listens on a unix socket, and the PROXY protocol header carries it.
local function bound_port()
  return tonumber(ngx_var.server_port) or tonumber(ngx_var.proxy_protocol_server_port)
end

-- The listener port the Gateway declared (ports may be mapped for non-root use).
local function listener_port(state)
  local bound = bound_port()
  local fe = state.frontends[bound]
  return fe and fe.list[1].port or bound
end

local function replace_prefix(path, prefix, replacement)
  local rest = path:sub(#prefix + 1)
  if replacement == "/" or replacement == "" then
    if rest == "" then return "/" end
    return rest
  end
  if replacement:sub(-1) == "/" and rest:sub(1, 1) == "/" then rest = rest:sub(2) end
  return replacement .. rest
end

local function new_path(spec, rule, path)
  if spec.path_type == "ReplaceFullPath" then return spec.path_value end
  if spec.path_type == "ReplacePrefixMatch" then
    return replace_prefix(path, rule.prefix or "", spec.path_value)
  end
  return nil
end

local function redirect(state, rule, path, host)
  local r = rule.redirect
  local scheme = r.scheme or ngx_var.scheme
  local hostname = r.hostname or host
  local port = r.port
  if not port then
    if r.scheme then
      port = (r.scheme == "https") and 443 or 80
    else
      port = listener_port(state)
    end
  end
  local location = scheme .. "://" .. hostname
  if not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)) then
    location = location .. ":" .. port
  end
  location = location .. (new_path(r, rule, path) or path)
  local args = ngx_var.args
  if args and args ~= "" then location = location .. "?" .. args end
  ngx.header["Location"] = location
  return ngx.exit(r.status_code)
end

-- An allowOrigins entry is "*", an exact origin, or an origin with one "*" in
-- its host ("https://*.example.com"), which stands for one or more labels.
local function origin_matches(pattern, origin)
  if pattern == "*" or pattern == origin then return true end
  local star = pattern:find("*", 1, true)
  if not star then return false end
  local prefix, suffix = pattern:sub(1, star - 1), pattern:sub(star + 1)
  if #origin <= #prefix + #suffix then return false end
  if origin:sub(1, #prefix) ~= prefix or origin:sub(-#suffix) ~= suffix then return false end
  local middle = origin:sub(#prefix + 1, #origin - #suffix)
  return not middle:find("[/:]")
end

local function cors_allowed_origin(cors, origin)
  for _, o in ipairs(cors.allow_origins or {}) do
    if origin_matches(o, origin) then return true end
  end
  return false
end

local function preflight(cors, origin)
  local h = ngx.header
  h["Access-Control-Allow-Origin"] = cors.allow_credentials and origin or
    ((cors.allow_origins or {})[1] == "*" and "*" or origin)
  if cors.allow_credentials then h["Access-Control-Allow-Credentials"] = "true" end
  local methods = table.concat(cors.allow_methods or {}, ", ")
  if methods == "*" and cors.allow_credentials then
    methods = ngx_var.http_access_control_request_method or ""
  end
  h["Access-Control-Allow-Methods"] = methods
  local headers = table.concat(cors.allow_headers or {}, ", ")
  if headers == "*" and cors.allow_credentials then
    headers = ngx_var.http_access_control_request_headers or ""
  end
  if headers ~= "" then h["Access-Control-Allow-Headers"] = headers end
  if cors.expose_headers and #cors.expose_headers > 0 then
    h["Access-Control-Expose-Headers"] = table.concat(cors.expose_headers, ", ")
  end
  h["Access-Control-Max-Age"] = tostring(cors.max_age or 5)
  return ngx.exit(204)
end

local function pick_backend(rule)
  if rule.total <= 0 then return nil end
  local n = math.random() * rule.total
  for _, b in ipairs(rule.backends) do
    n = n - b.w
    if n < 0 then return b end
  end
  return rule.backends[#rule.backends]
end

function _M.route()
  local state = config.get()
  if not state then return ngx.exit(503) end
  local host = ngx_var.host
  local frontends = state.frontends[bound_port()]
  if not frontends then return ngx.exit(404) end
  local frontend = config.lookup(frontends, host)
  if ngx_var.https == "on" then
    local sni = ngx_var.ssl_server_name
    local by_sni = sni and config.lookup(frontends, sni:lower()) or nil
    if by_sni and frontend and by_sni ~= frontend then
      -- TLS was set up for another listener than the one Host names
      return ngx.exit(421)
    end
    -- frontend mTLS: a client without a valid certificate is refused the
    -- connection (444: closed, no response), unless the listener allows an
    -- insecure fallback, which lets any client through
    if frontend and frontend.client_validation and not frontend.insecure_fallback
      and ngx_var.ssl_client_verify ~= "SUCCESS" then
      return ngx.exit(444)
    end
  end
  if not frontend then return ngx.exit(404) end
  local hosts = state.hosts[frontend.name]
  local vhost = hosts and config.lookup(hosts, host)
  if not vhost then return ngx.exit(404) end

  local path = ngx_var.uri
  local method = ngx_req.get_method()
  local req = {}
  local rule
  for _, r in ipairs(vhost.rules) do
    if rule_matches(r, path, method, req) then rule = r break end
  end
  if not rule then return ngx.exit(404) end

  local ctx = ngx.ctx
  if rule.cors then
    local origin = ngx_var.http_origin
    local allowed = origin and cors_allowed_origin(rule.cors, origin)
    -- the gateway answers every preflight of a CORS rule itself: with the
    -- policy for an allowed origin, with no CORS header for any other
    if origin and method == "OPTIONS" and ngx_var.http_access_control_request_method then
      if allowed then return preflight(rule.cors, origin) end
      return ngx.exit(204)
    end
    if allowed then ctx.cors, ctx.origin = rule.cors, origin end
  end
  apply_request_headers(rule.req)
  if rule.redirect then return redirect(state, rule, path, host) end
  ctx.resp = rule.resp

  if rule.rewrite then
    local rewritten = new_path(rule.rewrite, rule, path)
    if rule.rewrite.hostname then ngx_var.agc_upstream_host = rule.rewrite.hostname end
    if rewritten then ngx_req.set_uri(rewritten, false) end
  end

  local mirrored = false
  for i, mirror in ipairs(rule.mirrors) do
    if i <= 4 and math.random() * 100 < mirror.percent then
      ngx_var["agc_mirror" .. (i - 1)] = mirror.backend
      mirrored = true
    end
  end

  local backend = pick_backend(rule)
  if not backend or not backend.valid then return ngx.exit(500) end
  local target = state.backends[backend.id]
  if not target or #target.endpoints == 0 then return ngx.exit(503) end
  apply_request_headers(backend.req)
  ctx.backend_resp = backend.resp
  ctx.session = rule.session
  ctx.retry = rule.retry
  ctx.backend = backend.id
  ctx.timeout_ms = rule.backend_timeout_ms or rule.timeout_ms
  if target.protocol == "h2c" or target.tls then
    ctxstash.save()
    if target.tls then return ngx.exec("@agc_tls_" .. target.tls) end
    return ngx.exec("@agc_grpc")
  end
  if rule.retry and rule.retry.attempts > 0 then
    ctxstash.save()
    return ngx.exec(rule.retry.location)
  end
  if mirrored then
    ctxstash.save()
    return ngx.exec("@agc_mirrored")
  end
end

-- The retry location's access phase: on the first try nothing to do; on each
-- later one (an answer with a retried code came back through error_page) count
-- it against the attempts, which the balancer's retries after connection
-- failures share, wait the backoff, and go on. The try that can be the last
-- one goes to a location that passes the backend's answer through.
function _M.retry()
  local ctx = ctxstash.get()
  if not ctx.retrying then
    ctx.retrying = true
    return
  end
  local retry = ctx.retry
  local spent = (ctx.retries or 0) + 1
  if spent > retry.attempts then
    -- connection failures used up the attempts: the failed answer is gone
    return ngx.exec("@agc_retries_spent")
  end
  ctx.retries = spent
  if retry.backoff_ms and retry.backoff_ms > 0 then ngx.sleep(retry.backoff_ms / 1000) end
  if spent == retry.attempts then
    -- $agc_ctx still names the stashed context: the jump keeps it
    return ngx.exec("@agc_last_try")
  end
end

-- Every attempt failed and the last answer was intercepted: answer with its status.
function _M.retries_spent()
  local status = tonumber((ngx_var.upstream_status or ""):match("(%d+)%D*$"))
  return ngx.exit(status or 502)
end

-- Mirror subrequests: $agc_mirrorN (set by the parent; subrequests share its
-- variables) names the backend, or is empty. The choice goes into this
-- subrequest's own ngx.ctx, so it cannot disturb the parent's.
function _M.mirror(n)
  local id = ngx_var["agc_mirror" .. n]
  if id == nil or id == "" then return ngx.exit(204) end
  local state = config.get()
  local target = state and state.backends[id]
  if not target or #target.endpoints == 0 then return ngx.exit(204) end
  ngx.ctx.backend = id
end

local function apply_response_headers(m)
  if not m then return end
  local h = ngx.header
  for _, p in ipairs(m.set) do h[p[1]] = p[2] end
  for _, p in ipairs(m.add) do
    local existing = h[p[1]]
    if type(existing) == "table" then
      table.insert(existing, p[2])
      h[p[1]] = existing
    elseif existing then
      h[p[1]] = { existing, p[2] }
    else
      h[p[1]] = p[2]
    end
  end
  for _, name in ipairs(m.remove) do h[name] = nil end
end

function _M.header_filter()
  local ctx = ctxstash.get()
  apply_response_headers(ctx.resp)
  apply_response_headers(ctx.backend_resp)
  local cors = ctx.cors
  if cors then
    local h = ngx.header
    local any = (cors.allow_origins or {})[1] == "*" and not cors.allow_credentials
    h["Access-Control-Allow-Origin"] = any and "*" or ctx.origin
    if cors.allow_credentials then h["Access-Control-Allow-Credentials"] = "true" end
    if cors.expose_headers and #cors.expose_headers > 0 then
      h["Access-Control-Expose-Headers"] = table.concat(cors.expose_headers, ", ")
    end
  end
  if ctx.set_cookie then
    local existing = ngx.header["Set-Cookie"]
    if type(existing) == "table" then
      table.insert(existing, ctx.set_cookie)
      ngx.header["Set-Cookie"] = existing
    elseif existing then
      ngx.header["Set-Cookie"] = { existing, ctx.set_cookie }
    else
      ngx.header["Set-Cookie"] = ctx.set_cookie
    end
  end
end

return _M
