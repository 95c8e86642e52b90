-- Per-request routing (access phase). route() takes these steps in order:
--   select_frontend   the listener: bound port, then Host (TLS: SNI must agree,
--                     421; frontend mTLS: 444 without a valid client certificate)
--   config.lookup     the listener's host entry for Host
--   match.first_match the first matching rule (rules arrive in precedence order)
--   ratelimit.check   the rule's rate and concurrency limits, if a policy sets them
--                     (429 over either; the slot in flight is given back in `log`);
--                     a limit keyed by a JWT claim after auth.check, on the verified token
--   waf.inspect       the rule's WebApplicationFirewallPolicy, if any: ModSecurity
--                     inspects the request (its block response, in Prevention)
--   answer_cors       preflights answered here; an allowed origin is noted for
--                     the response (header_filter)
--   auth.check        the rule's AuthPolicy, if any: addresses (403), then
--                     credentials (401) or an external check
--   apply_rule_filters request headers, redirect (answers), rewrite
--   choose_mirrors    the mirrors this request is copied to
--   pick_backend      a weighted choice among the rule's backends
--   forward           the circuit breaker (BackendLoadBalancingPolicy: 503 when
--                     the backend has maxRequests in flight), then the backend's
--                     id and policies into the request context
--                     (the balancer reads them) and the location to go on in
local config = require("agc.config")
local auth = require("agc.auth")
local ctxstash = require("agc.ctxstash")
local filters = require("agc.filters")
local match = require("agc.match")
local mesh = require("agc.mesh")
local health = require("agc.health")
local metrics = require("agc.metrics")
local ratelimit = require("agc.ratelimit")
local strategies = require("agc.strategies")
local waf = require("agc.waf")

local _M = {}

local ngx_var, ngx_req = ngx.var, ngx.req

-- as many mirror locations as static.py renders
local MIRROR_SLOTS = 4

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

-- The listener serving a request that came to `port` for `host`, or nil and
-- the status to answer with. `vars` holds the request's TLS variables (ngx.var:
-- https, ssl_server_name, ssl_client_verify), read only when needed.
function _M.select_frontend(state, port, host, vars)
  local frontends = state.frontends[port]
  if not frontends then return nil, 404 end
  local frontend = config.lookup(frontends, host)
  if vars.https == "on" then
    local sni = vars.ssl_server_name
    local by_sni = sni and config.lookup(frontends, sni:lower()) or nil
    if by_sni and frontend and by_sni ~= frontend then
      -- TLS was set up for another listener than the one Host names
      return nil, 421
    end
    -- frontend mTLS: a client without a valid certificate is refused the
    -- connection (444: closed, no response), unless the listener allows an
    -- insecure fallback, which lets any client through
    if frontend and frontend.client_ca and not frontend.insecure_fallback
      and vars.ssl_client_verify ~= "SUCCESS" then
      return nil, 444
    end
  end
  if not frontend then return nil, 404 end
  return frontend
end

local function read_headers() return ngx_req.get_headers(100) end
local function read_args() return ngx_req.get_uri_args(100) end

-- A CORS rule: the gateway answers every preflight itself (with the policy for
-- an allowed origin, with no CORS header for any other); an ordinary request
-- from an allowed origin gets the CORS headers on its response. True when the
-- request was answered.
local function answer_cors(cors, method, ctx)
  local origin = ngx_var.http_origin
  local allowed = origin and filters.origin_allowed(cors, origin)
  local request_method = ngx_var.http_access_control_request_method
  if origin and method == "OPTIONS" and request_method then
    if allowed then
      local h = ngx.header
      local answer = filters.preflight_headers(
        cors, origin, request_method, ngx_var.http_access_control_request_headers)
      for name, value in pairs(answer) do h[name] = value end
    end
    ngx.exit(204)
    return true
  end
  if allowed then ctx.cors, ctx.origin = cors, origin end
  return false
end

local function redirect(state, rule, path, host)
  ngx.header["Location"] = filters.redirect_location(rule, {
    scheme = ngx_var.scheme,
    host = host,
    path = path,
    args = ngx_var.args,
    listener_port = listener_port(state),
  })
  return ngx.exit(rule.redirect.status_code)
end

-- Request headers, then a redirect (which answers the request: true) or a
-- rewrite of the upstream Host and path.
local function apply_rule_filters(state, rule, path, host)
  filters.apply_request_headers(rule.req)
  if rule.redirect then
    redirect(state, rule, path, host)
    return true
  end
  local rewrite = rule.rewrite
  if rewrite then
    local rewritten = filters.new_path(rewrite, rule, path)
    if rewrite.hostname then ngx_var.agc_upstream_host = rewrite.hostname end
    if rewritten then ngx_req.set_uri(rewritten, false) end
  end
  return false
end

-- Each mirror takes its share of requests independently; the chosen ones'
-- backends go into $agc_mirror<n>, which the mirror subrequests read.
-- `roll()` returns a number in [0, 1). True when any mirror was chosen.
function _M.choose_mirrors(rule, roll)
  local mirrored = false
  for i, mirror in ipairs(rule.mirrors) do
    if i <= MIRROR_SLOTS and roll() * 100 < mirror.percent then
      ngx_var["agc_mirror" .. (i - 1)] = mirror.backend
      mirrored = true
    end
  end
  return mirrored
end

-- A backend with a share of traffic proportional to its weight; `roll()`
-- returns a number in [0, 1). nil when every weight is 0.
function _M.pick_backend(rule, roll)
  if rule.total <= 0 then return nil end
  local n = roll() * rule.total
  for _, b in ipairs(rule.backends) do
    n = n - b.weight
    if n < 0 then return b end
  end
  return rule.backends[#rule.backends]
end

-- Continue in the location that speaks `target`'s protocol when it is not plain
-- HTTP (the context stashed across the jump: ngx.exec drops it); false: the
-- current location speaks it. With custom error pages (`errors`), a TLS backend's
-- location is the one that also intercepts the errors (static.py).
local function jump_for(target, errors)
  if not (target.protocol == "h2c" or target.tls or target.mesh) then return false end
  ctxstash.save()
  if target.mesh then
    mesh.forward(target.protocol == "h2c")
  elseif target.tls then
    ngx.exec((errors and errors.location .. "_tls_" or "@agc_tls_") .. target.tls)
  else
    ngx.exec("@agc_grpc")
  end
  return true
end

-- Hand the request to `backend`: what the balancer and the response filters
-- need goes into the context, and the request continues in the location that
-- speaks the backend's protocol, carries its retry policy, its mirrors or its
-- custom error pages (the context is stashed across the jump: ngx.exec drops
-- it). Translation keeps error pages apart from the others but TLS.
local function forward(state, rule, backend, mirrored, ctx)
  local target = state.backends[backend.id]
  if not target or #target.endpoints == 0 then return ngx.exit(503) end
  local lb = target.lb
  if lb and lb.max_requests then
    -- the circuit breaker: a backend at its maxRequests answers 503 at once
    local key = "b|" .. backend.id
    local taken = strategies.take(key, lb.max_requests)
    if taken == "full" then
      ngx.header["X-AGC-Overloaded"] = "maxRequests"
      return ngx.exit(503)
    end
    if taken == "taken" then ctx.backend_key = key end
  end
  filters.apply_request_headers(backend.req)
  ctx.backend_resp = backend.resp
  ctx.session = rule.session
  ctx.retry = rule.retry
  ctx.backend = backend.id
  ctx.timeout_ms = rule.backend_timeout_ms or rule.timeout_ms
  ctx.errors = rule.errors
  if jump_for(target, rule.errors) then return end
  if rule.retry and rule.retry.attempts > 0 then
    ctxstash.save()
    return ngx.exec(rule.retry.location)
  end
  if mirrored then
    ctxstash.save()
    return ngx.exec("@agc_mirrored")
  end
  if rule.errors then
    ctxstash.save()
    return ngx.exec(rule.errors.location)
  end
end

-- Whether the request's body has at most `max` bytes: by its Content-Length, or
-- (chunked) by reading it, which only rules with a limit do.
function _M.body_within(max)
  local length = tonumber(ngx_var.http_content_length or "")
  if length then return length <= max end
  if not ngx_var.http_transfer_encoding then return true end
  ngx_req.read_body()
  local data = ngx_req.get_body_data()
  if data then return #data <= max end
  local path = ngx_req.get_body_file()
  if not path then return true end
  local file = io.open(path, "rb")
  if not file then return false end
  local size = file:seek("end")
  file:close()
  return size ~= nil and size <= max
end

-- While the controller drains keep-alive connections ahead of a reload (see
-- control.drain), a request first moves to @agc_drain, the same routing under
-- keepalive_timeout 0: its response says "Connection: close" and the connection
-- ends cleanly, so no client is sending on an idle connection the old workers
-- close when they exit. `drained` is true there.
function _M.route(drained)
  if not drained and config.draining() then return ngx.exec("@agc_drain") end
  local state = config.get()
  if not state then return ngx.exit(503) end
  local host = ngx_var.host
  local frontend, status = _M.select_frontend(state, bound_port(), host, ngx_var)
  if not frontend then return ngx.exit(status) end
  local hosts = state.hosts[frontend.name]
  local vhost = hosts and config.lookup(hosts, host)
  if not vhost then return ngx.exit(404) end

  local path = ngx_var.uri
  local method = ngx_req.get_method()
  local rule = match.first_match(vhost.rules, match.view(path, method, read_headers, read_args))
  if not rule then return ngx.exit(404) end

  local ctx = ngx.ctx
  ctx.route = rule.route
  ngx_var.agc_route = rule.route
  -- a limit keyed by a JWT claim waits for the verified token (after auth)
  local limit = rule.limit
  if limit and not limit.claim and not ratelimit.check(limit, ctx) then return end
  if rule.max_body and not _M.body_within(rule.max_body) then return ngx.exit(413) end
  -- after the limit (a flood is turned away before it costs inspections), before
  -- the credentials (what reaches an authorization Service has been inspected)
  if rule.waf and not waf.inspect(rule.waf) then return end
  -- a CORS preflight carries no credentials: it is answered before they are asked for
  if rule.cors and answer_cors(rule.cors, method, ctx) then return end
  if rule.auth and not auth.check(rule.auth) then return end
  if limit and limit.claim and not ratelimit.check(limit, ctx) then return end
  if apply_rule_filters(state, rule, path, host) then return end
  ctx.resp = rule.resp
  local mirrored = _M.choose_mirrors(rule, math.random)
  local backend = _M.pick_backend(rule, math.random)
  if not backend or not backend.valid then return ngx.exit(500) end
  return forward(state, rule, backend, mirrored, ctx)
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

-- The status of the last upstream try ("502, 200": 200), nil when none answered.
local function last_upstream_status()
  local statuses = ngx_var.upstream_status
  return statuses and tonumber(statuses:match("(%d+)%D*$"))
end

-- The access phase of @agc_error_page (static.py): the rule's backend answered
-- with one of its error page codes, which the error pages location intercepted.
-- The same request goes to the error backend instead, at path "/", told what
-- happened in ingress-nginx's custom error headers; its answer is the client's.
function _M.error_page()
  local ctx = ctxstash.get()
  local errors = ctx.errors
  local status = last_upstream_status()
  local state = config.get()
  local target = errors and state and state.backends[errors.backend]
  -- as for any backend without endpoints: never the intercepted answer, whose body is gone
  if not target or #target.endpoints == 0 then return ngx.exit(503) end
  local set = ngx_req.set_header
  set("X-Code", status)
  set("X-Format", ngx_var.http_accept)
  set("X-Original-URI", ngx_var.request_uri)
  local namespace, route = (ctx.route or ""):match("^([^/]*)/(.*)$")
  set("X-Namespace", namespace)
  set("X-Route-Name", route)
  local service, port = (ctx.backend or ""):match("^[^/]*/([^:]*):(%d+)")
  set("X-Service-Name", service)
  set("X-Service-Port", port)
  ngx_req.set_uri("/")
  -- the rule's backend's settings are not the error backend's
  ctx.backend = errors.backend
  ctx.session, ctx.retry, ctx.backend_resp = nil, nil, nil
  jump_for(target, nil)
end

-- Every attempt failed and the last answer was intercepted: answer with its status.
function _M.retries_spent()
  local status = last_upstream_status()
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

-- Log phase: give back the in-flight slots the request took (agc.ratelimit's
-- concurrency, agc.strategies), tell passive ejection how its endpoint answered
-- (agc.health), count the request (agc.metrics), then drop the request's stashed
-- context. It runs once per request, however the request was answered.
function _M.log()
  -- only the firewall's subrequests are logged (log_subrequest, static.py): theirs
  -- is ModSecurity's audit log, and they took nothing here
  if ngx.is_subrequest then return end
  local ctx = ctxstash.get()
  if ctx.limit_slot then ratelimit.leave(ctx.limit_slot) end
  if ctx.backend_key then strategies.give_back(ctx.backend_key) end
  if ctx.endpoint_key then strategies.give_back(ctx.endpoint_key) end
  local status = ngx.status
  -- a request answered below 500 had its last try answer so; only the others
  -- read which (the variable is a list of every try's status, to parse)
  local failed = false
  if ctx.backend and (status >= 500 or ctx.passive) then
    local upstream_status = last_upstream_status()
    failed = not upstream_status or upstream_status >= 500
  end
  if ctx.passive then health.observe(ctx.endpoint.health_key, failed, ctx.passive) end
  metrics.observe(ctx.route, ctx.backend, status, ngx.now() - ngx.req.start_time(),
    failed and status >= 500)
  ctxstash.release()
end

-- Response headers: the rule's modifiers, its backend's, CORS, and the
-- session cookie the balancer chose.
function _M.header_filter()
  local ctx = ctxstash.get()
  local h = ngx.header
  filters.apply_response_headers(ctx.resp, h)
  filters.apply_response_headers(ctx.backend_resp, h)
  if ctx.cors then
    for name, value in pairs(filters.response_cors_headers(ctx.cors, ctx.origin)) do
      h[name] = value
    end
  end
  if ctx.set_cookie then filters.append_header(h, "Set-Cookie", ctx.set_cookie) end
  local limit_headers = ctx.limit_headers
  if limit_headers then
    for name, value in pairs(limit_headers) do h[name] = value end
  end
end

return _M
