-- The routing state of one Gateway, shared by all workers.
--
-- The controller PUTs the whole state as JSON to the control socket; `store`
-- validates and compiles it first and swaps it into the shared dict only if
-- that succeeds, so a bad update never replaces the last good one. Each worker
-- keeps the compiled form of the version it last saw and recompiles only when
-- the shared version number moves: per request the cost is one shdict get.
--
-- The document (its schema is providers/local/state.py, one class per element,
-- with the same names). Absent keys read as nil: the controller sends no null,
-- no false and no empty list, so every list below is read as `x or {}`.
-- Indexes into `certs` and `cas` are 0-based.
--
--   static     id of the static configuration the state was made for
--   frontends  { [bound port] = { Frontend }, most specific hostname first }
--     Frontend   name, port (as declared), hostname?, certs = { index },
--                client_ca? (index: frontend mTLS), insecure_fallback?
--   hosts      { [listener name] = { Host } }
--     Host       hostname? (nil: any; "*.x" wildcard), rules = { rule id } in precedence order
--   rules      { [rule id] = Rule }: each compiled once, however many hosts list it
--     Rule       route ("ns/name"), match = Match, backends = { BackendRef },
--                req?, resp? (HeaderModifier), redirect?, rewrite?, mirrors = { Mirror },
--                cors?, timeout_ms?, backend_timeout_ms?, session?, retry?
--     Match      path = { type, value }, method?, headers = { ValueMatch },
--                query = { ValueMatch }
--     ValueMatch type ("Exact" | "RegularExpression"), name, value
--     BackendRef id (key of `backends`), weight, valid?, req?, resp?
--     HeaderModifier  set = { {name, value} }, add = { {name, value} }, remove = { name }
--     Redirect   status_code, scheme?, hostname?, port?, path_type?, path_value?
--     Rewrite    hostname?, path_type?, path_value?
--     Mirror     backend (key of `backends`), percent
--     Cors       allow_origins, allow_methods, allow_headers, expose_headers,
--                allow_credentials?, max_age
--     Session    type ("Cookie" | "Header"), name, absolute_timeout_s?
--     Retry      attempts, location (a named location of the static config), backoff_ms?
--   backends   { [id] = Target }
--     Target     endpoints = { {addr, port} }, protocol ("http" | "h2c" | "ws"),
--                tls? (index of the static config's @agc_tls_<n> location)
--   certs      { {cert, key} } PEM
--   cas        { PEM } client CAs
local cjson = require("cjson.safe")

local _M = {}

local shared = ngx.shared.agc_config
local compiled, compiled_version = nil, -1
-- the version this worker last looked at, adopted or not: a version it declined
-- (or that failed to compile) is not decoded again on every request
local seen_version = -1
-- the id of the static configuration this worker runs (set in init_by_lua)
local static_id = nil

function _M.set_static_id(id)
  static_id = id
end

function _M.static_id()
  return static_id
end

-- Header modifiers keep names as written (responses show them); lookups of
-- existing values use the lower-cased name.
local function with_lookup_names(list)
  local out = {}
  for i, p in ipairs(list or {}) do
    out[i] = { name = p.name, value = p.value, lookup = p.name:lower() }
  end
  return out
end

local function compile_modifier(m)
  if m == nil then return nil end
  return { set = with_lookup_names(m.set), add = with_lookup_names(m.add), remove = m.remove or {} }
end

-- ngx.re.find returns from, to, err: only the third value says a regex is bad
local function check_regex(what, regex)
  local _, _, err = ngx.re.find("", regex, "jo")
  if err then return nil, "invalid " .. what .. " regex: " .. err end
  return true
end

local function compile_value_matches(list, what, lower_names)
  local out = {}
  for i, v in ipairs(list or {}) do
    out[i] = { type = v.type, name = lower_names and v.name:lower() or v.name, value = v.value }
    if v.type == "RegularExpression" then
      local ok, err = check_regex(what, v.value)
      if not ok then return nil, err end
    end
  end
  return out
end

local function compile_rule(rule)
  local m = rule.match
  local path_type, path_value = m.path.type, m.path.value
  local c = {
    route = rule.route,
    path_type = path_type,
    path = path_value,
    method = m.method,
    backends = rule.backends or {},
    total = 0,
    req = compile_modifier(rule.req),
    resp = compile_modifier(rule.resp),
    redirect = rule.redirect,
    rewrite = rule.rewrite,
    mirrors = rule.mirrors or {},
    cors = rule.cors,
    timeout_ms = rule.timeout_ms,
    backend_timeout_ms = rule.backend_timeout_ms,
    session = rule.session,
    retry = rule.retry,
  }
  if path_type == "PathPrefix" then
    -- segment-aware: "/v2" and "/v2/" both match "/v2", "/v2/" and "/v2/x"
    local prefix = path_value
    if #prefix > 1 and prefix:sub(-1) == "/" then prefix = prefix:sub(1, -2) end
    c.prefix = prefix
  elseif path_type == "RegularExpression" then
    -- full match, compiled once per worker (the "o" flag caches it)
    c.regex = "^(?:" .. path_value .. ")$"
    local ok, err = check_regex("path", c.regex)
    if not ok then return nil, err end
  end
  local err
  c.headers, err = compile_value_matches(m.headers, "header", true)
  if not c.headers then return nil, err end
  c.query, err = compile_value_matches(m.query, "query", false)
  if not c.query then return nil, err end
  for _, b in ipairs(c.backends) do
    b.req = compile_modifier(b.req)
    b.resp = compile_modifier(b.resp)
    c.total = c.total + b.weight
  end
  return c
end

-- Hostname lookup tables: exact names in a hash, wildcards by suffix (longest
-- first), then the catch-all. The data plane walks at most a few entries.
local function index_by_hostname(items)
  local idx = { exact = {}, wildcards = {}, any = nil }
  for _, item in ipairs(items) do
    local h = item.hostname
    if h == nil or h == "*" then
      idx.any = idx.any or item
    elseif h:sub(1, 2) == "*." then
      table.insert(idx.wildcards, { suffix = h:sub(2), item = item })
    else
      idx.exact[h] = idx.exact[h] or item
    end
  end
  table.sort(idx.wildcards, function(a, b) return #a.suffix > #b.suffix end)
  return idx
end

function _M.lookup(idx, host)
  local hit = idx.exact[host]
  if hit then return hit end
  for _, w in ipairs(idx.wildcards) do
    -- "*.example.com" matches one or more labels, never "example.com" itself
    if #host > #w.suffix and host:sub(-#w.suffix) == w.suffix then return w.item end
  end
  return idx.any
end

local function compile(doc)
  local state = { frontends = {}, hosts = {}, backends = doc.backends or {}, certs = {}, cas = doc.cas or {} }
  -- session-persistence cookies name endpoints by id: computed here, once per
  -- state, not per request
  for _, backend in pairs(state.backends) do
    backend.endpoints = backend.endpoints or {}
    backend.by_id = {}
    for _, ep in ipairs(backend.endpoints) do
      ep.id = ngx.md5(ep.addr .. ":" .. ep.port):sub(1, 16)
      backend.by_id[ep.id] = ep
    end
  end
  for port, frontends in pairs(doc.frontends or {}) do
    state.frontends[tonumber(port)] = index_by_hostname(frontends)
    state.frontends[tonumber(port)].list = frontends
  end
  local rules = {}
  for id, rule in pairs(doc.rules or {}) do
    local c, err = compile_rule(rule)
    if not c then return nil, err end
    rules[id] = c
  end
  for listener, hosts in pairs(doc.hosts or {}) do
    for _, host in ipairs(hosts) do
      local resolved = {}
      for i, id in ipairs(host.rules or {}) do
        resolved[i] = rules[id]
        if not resolved[i] then return nil, "host " .. tostring(host.hostname) .. ": unknown rule " .. id end
      end
      host.rules = resolved
    end
    state.hosts[listener] = index_by_hostname(hosts)
  end
  state.certs = doc.certs or {}
  return state
end

-- the compiled form of a document (tests compile documents without storing them)
_M.compile = compile

-- Worker side: the compiled state of the current version.
function _M.get()
  local version = shared:get("version")
  if version == nil then return nil end
  if version ~= compiled_version and version ~= seen_version then
    seen_version = version
    local doc = cjson.decode(shared:get("doc"))
    if compiled and doc.static ~= static_id then
      -- state for another static configuration (a reload is under way): this
      -- worker is draining, or not yet told; keep the last state it can serve
      return compiled
    end
    local state, err = compile(doc)
    if not state then
      ngx.log(ngx.ERR, "agc: stored config failed to compile: ", err)
      return compiled
    end
    state.version = version
    compiled, compiled_version = state, version
  end
  return compiled
end

-- Control side: validate, then swap. Returns the new version or nil, err.
function _M.store(body)
  local doc, err = cjson.decode(body)
  if not doc then return nil, "invalid JSON: " .. (err or "?") end
  local state, cerr = compile(doc)
  if not state then return nil, cerr end
  local ok, serr = shared:set("doc", body)
  if not ok then return nil, "shared dict: " .. (serr or "?") end
  local version = shared:incr("version", 1, 0)
  return version
end

return _M
