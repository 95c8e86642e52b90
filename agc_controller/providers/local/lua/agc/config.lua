-- The routing state of one Gateway, shared by all workers.
--
-- The state is stored in parts (see "Parts" below), so a change costs what it
-- changes: the controller PATCHes only the parts that changed (`apply_delta`),
-- which are validated and compiled first and stored only if all of them pass,
-- so a bad update never replaces the last good state. Every update bumps the
-- shared version and logs the names of the parts it touched; a worker keeps its
-- compiled state and, when the version moves, decodes and compiles just the
-- parts logged since its own version (all of them only when it is new or too
-- far behind). Per request the cost is one shdict get; no worker ever decodes
-- the whole state to take in one route.
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
--                cors?, timeout_ms?, backend_timeout_ms?, session?, retry?, limit?, waf?,
--                auth?, errors? (ErrorPages)
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
--     ErrorPages location (a named location of the static config; `_tls_<n>` appended
--                for a backend over upstream TLS setting n), backend (key of `backends`)
--     RateLimit  bucket, requests?, period_s?, burst? (the rate, or none), header?,
--                claim?, concurrency? (lua/agc/ratelimit.lua)
--     Auth       refuse?, deny, allow, trusted_proxies (CIDRs), api_keys? (sha256 hex ->
--                client), key_header? | key_query?, client_header?, users? (user ->
--                hash), realm?, external? {backend, path, headers_to_backend, timeout_ms}
--                (lua/agc/auth.lua)
--     Waf        id (the static config's inspection location), detect?, status, body?,
--                content_type (lua/agc/waf.lua)
--   backends   { [id] = Target }
--     Target     endpoints = { {addr, port} }, protocol ("http" | "h2c" | "ws"),
--                tls? (index of the static config's @agc_tls_<n> location),
--                mesh? (over Istio mesh mTLS: lua/agc/mesh.lua),
--                health? (HealthCheck: lua/agc/health.lua), passive? (the same),
--                lb? (LoadBalancing: lua/agc/strategies.lua)
--   certs      { {cert, key} } PEM
--   cas        { PEM } client CAs
--
-- Parts (providers/local/state.py `parts`), each stored as JSON under "p:<name>":
--   meta                       { frontends, certs, cas }
--   b:<backend id>             Target
--   r:<rule id>                Rule
--   h:<listener>:<hostname>    Host plus its listener (hostname "" for none)
-- Shared keys besides: "version" (bumped per update), "log:<version>" (the names
-- of the parts that update set or deleted, kept for LOG_KEEP versions), "static"
-- (the static configuration id the last update was made for).
--
-- Consistency: an update writes backends, then rules, then hosts and meta,
-- then deletes in the reverse order, and only then bumps the version. A worker
-- catching up may read a part newer than the version it catches up to, never
-- one older; a host naming a rule the worker has not compiled yet loads it
-- from the shared dict then.
local cjson = require("cjson.safe")
local auth = require("agc.auth")
local health = require("agc.health")
local ratelimit = require("agc.ratelimit")
local strategies = require("agc.strategies")
local waf = require("agc.waf")

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

-- Drain mode: set by the controller before a reload, with an expiry, so that it
-- ends by itself should the controller not come back to clear it.
function _M.set_draining(seconds)
  if seconds > 0 then
    ngx.shared.agc_config:set("draining", true, seconds)
  else
    ngx.shared.agc_config:delete("draining")
  end
end

function _M.draining()
  return ngx.shared.agc_config:get("draining") == true
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
    max_body = rule.max_body,
    session = rule.session,
    retry = rule.retry,
    errors = rule.errors,
  }
  if rule.rewrite and rule.rewrite.path_type == "ReplaceRegexMatch" then
    local ok, err = check_regex("rewrite", rule.rewrite.path_pattern)
    if not ok then return nil, err end
  end
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
  c.limit, err = ratelimit.compile(rule.limit)
  if err then return nil, err end
  c.headers, err = compile_value_matches(m.headers, "header", true)
  if not c.headers then return nil, err end
  c.query, err = compile_value_matches(m.query, "query", false)
  if not c.query then return nil, err end
  c.auth, err = auth.compile(rule.auth)
  if err then return nil, err end
  c.waf, err = waf.compile(rule.waf)
  if err then return nil, err end
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

-- Kinds of parts, in the order an update stores them (what refers comes after
-- what it refers to).
local KIND_ORDER = { b = 1, r = 2, h = 3, meta = 4 }
-- versions whose part names stay logged; a worker further behind rebuilds
local LOG_KEEP = 512

local function kind_of(name)
  return name == "meta" and "meta" or name:sub(1, 1)
end

local function by_kind(a, b)
  local ka, kb = KIND_ORDER[kind_of(a)] or 9, KIND_ORDER[kind_of(b)] or 9
  if ka ~= kb then return ka < kb end
  return a < b
end

local function new_state()
  return { frontends = {}, hosts = {}, backends = {}, rules = {}, certs = {}, cas = {},
           meta_version = 0 }
end

local function compile_backend(id, backend)
  -- session-persistence cookies name endpoints by id, health checks by key:
  -- computed here, once per backend, not per request
  backend.endpoints = backend.endpoints or {}
  backend.by_id = {}
  local err
  backend.health, err = health.compile(backend.health)
  if err then return nil, err end
  backend.passive = health.compile_passive(backend.passive)
  backend.lb, err = strategies.compile(backend.lb)
  if err then return nil, err end
  for _, ep in ipairs(backend.endpoints) do
    ep.id = ngx.md5(ep.addr .. ":" .. ep.port):sub(1, 16)
    ep.health_key = health.key(id, ep)
    backend.by_id[ep.id] = ep
  end
  return backend
end

local function host_key(listener, hostname)
  return "h:" .. listener .. ":" .. (hostname or "")
end

-- Put `entry` (or nothing) under `hostname` in a listener's hostname index.
local function index_set(idx, hostname, entry)
  if hostname == nil or hostname == "" or hostname == "*" then
    idx.any = entry
  elseif hostname:sub(1, 2) == "*." then
    local suffix = hostname:sub(2)
    for i, w in ipairs(idx.wildcards) do
      if w.suffix == suffix then
        table.remove(idx.wildcards, i)
        break
      end
    end
    if entry then
      table.insert(idx.wildcards, { suffix = suffix, item = entry })
      table.sort(idx.wildcards, function(a, b) return #a.suffix > #b.suffix end)
    end
  else
    idx.exact[hostname] = entry
  end
end

-- Install part `name` with decoded value `value` (nil: remove it) into `state`.
-- `load(name)` reads another part (a rule a host names that `state` lacks).
local function install(state, name, value, load)
  local kind = kind_of(name)
  if kind == "b" then
    local id = name:sub(3)
    if value == nil then
      state.backends[id] = nil
      return true
    end
    local c, err = compile_backend(id, value)
    if not c then return nil, err end
    state.backends[id] = c
  elseif kind == "r" then
    local id = name:sub(3)
    if value == nil then
      state.rules[id] = nil
      return true
    end
    local c, err = compile_rule(value)
    if not c then return nil, err end
    local existing = state.rules[id]
    if existing then
      -- in place: the hosts listing this rule hold this very table
      for k in pairs(existing) do existing[k] = nil end
      for k, v in pairs(c) do existing[k] = v end
    else
      state.rules[id] = c
    end
  elseif kind == "h" then
    local listener, hostname = name:match("^h:([^:]*):(.*)$")
    local idx = state.hosts[listener]
    if not idx then
      idx = { exact = {}, wildcards = {}, any = nil }
      state.hosts[listener] = idx
    end
    if value == nil then
      index_set(idx, hostname, nil)
      return true
    end
    local resolved = {}
    for _, id in ipairs(value.rules or {}) do
      local rule = state.rules[id]
      if not rule and load then
        local ok = install(state, "r:" .. id, load("r:" .. id))
        rule = ok and state.rules[id]
      end
      if not rule then return nil, "host " .. (value.hostname or "*") .. ": unknown rule " .. id end
      resolved[#resolved + 1] = rule
    end
    index_set(idx, hostname, { hostname = value.hostname, rules = resolved })
  elseif kind == "meta" then
    value = value or {}
    state.frontends = {}
    for port, frontends in pairs(value.frontends or {}) do
      state.frontends[tonumber(port)] = index_by_hostname(frontends)
      state.frontends[tonumber(port)].list = frontends
    end
    state.certs = value.certs or {}
    state.cas = value.cas or {}
    state.meta_version = state.meta_version + 1
  else
    return nil, "unknown part " .. name
  end
  return true
end

-- A document (the whole state at once) as parts: name -> value.
local function parts_of(doc)
  local parts = { meta = { frontends = doc.frontends, certs = doc.certs, cas = doc.cas } }
  for id, backend in pairs(doc.backends or {}) do parts["b:" .. id] = backend end
  for id, rule in pairs(doc.rules or {}) do parts["r:" .. id] = rule end
  for listener, hosts in pairs(doc.hosts or {}) do
    for _, host in ipairs(hosts) do parts[host_key(listener, host.hostname)] = host end
  end
  return parts
end

local function sorted_names(parts)
  local names = {}
  for name in pairs(parts) do names[#names + 1] = name end
  table.sort(names, by_kind)
  return names
end

-- The compiled form of a whole document (tests compile documents without storing them).
function _M.compile(doc)
  local parts = parts_of(doc)
  local state = new_state()
  for _, name in ipairs(sorted_names(parts)) do
    local ok, err = install(state, name, parts[name], function(n) return parts[n] end)
    if not ok then return nil, err end
  end
  return state
end

local function load_stored(name)
  local text = shared:get("p:" .. name)
  return text and cjson.decode(text) or nil
end

-- Apply the parts `names` (nil: every stored part) from the shared dict to `state`.
local function catch_up(state, names)
  if not names then
    names = {}
    for _, key in ipairs(shared:get_keys(0)) do
      if key:sub(1, 2) == "p:" then names[#names + 1] = key:sub(3) end
    end
  end
  table.sort(names, by_kind)
  local now = ngx.now()
  for _, name in ipairs(names) do
    local backend = kind_of(name) == "b" and name:sub(3)
    local previous = backend and state.backends[backend]
    local ok, err = install(state, name, load_stored(name), load_stored)
    if not ok then ngx.log(ngx.ERR, "agc: stored part ", name, " failed to compile: ", err) end
    if ok and backend then strategies.note_arrivals(state.backends[backend], previous, now) end
  end
end

-- The part names updates (after_version, version] touched; nil if one is no longer logged.
local function logged_since(after_version, version)
  if version - after_version > LOG_KEEP then return nil end
  local names, seen = {}, {}
  for v = after_version + 1, version do
    local logged = shared:get("log:" .. v)
    if not logged then return nil end
    for _, name in ipairs(cjson.decode(logged)) do
      if not seen[name] then
        seen[name] = true
        names[#names + 1] = name
      end
    end
  end
  return names
end

-- Worker side: the compiled state of the current version.
function _M.get()
  local version = shared:get("version")
  if version == nil then return nil end
  if version == compiled_version or version == seen_version then return compiled end
  seen_version = version
  if compiled and shared:get("static") ~= static_id then
    -- state for another static configuration (a reload is under way): this
    -- worker is draining, or not yet told; keep the last state it can serve
    return compiled
  end
  local names = compiled and logged_since(compiled_version, version)
  if names then
    catch_up(compiled, names)
  else
    compiled = new_state()
    catch_up(compiled, nil)
  end
  compiled.version = version
  compiled_version = version
  return compiled
end

-- Whether rule `id` exists once an update setting `set` and deleting `deleted` is stored.
local function rule_after(id, set, deleted)
  local name = "r:" .. id
  if set[name] then return true end
  return not deleted[name] and shared:get("p:" .. name) ~= nil
end

-- Control side: check every part an update sets compiles, and every rule a host
-- names exists afterwards; nil, err otherwise (then nothing is stored).
local function validate(set, deleted)
  local scratch = new_state()
  for _, name in ipairs(sorted_names(set)) do
    local value = set[name]
    if kind_of(name) == "h" then
      for _, id in ipairs(value.rules or {}) do
        if not rule_after(id, set, deleted) then
          return nil, "host " .. (value.hostname or "*") .. ": unknown rule " .. id
        end
      end
    else
      local ok, err = install(scratch, name, value, nil)
      if not ok then return nil, err end
    end
  end
  return true
end

-- Control side: apply an update {static, replace?, set = {name = part}, delete = {name}}.
-- Returns the new version, or nil and why nothing was stored.
function _M.apply_delta(update)
  local set, deleted = update.set or {}, {}
  for _, name in ipairs(update.delete or {}) do deleted[name] = true end
  if update.replace then
    for _, key in ipairs(shared:get_keys(0)) do
      local name = key:sub(1, 2) == "p:" and key:sub(3)
      if name and not set[name] then deleted[name] = true end
    end
  end
  -- encoded before validating: compiling fills in the tables it is given
  local texts = {}
  for name, value in pairs(set) do texts[name] = cjson.encode(value) end
  local ok, err = validate(set, deleted)
  if not ok then return nil, err end
  local touched = sorted_names(set)
  for _, name in ipairs(touched) do
    local stored, serr = shared:safe_set("p:" .. name, texts[name])
    if not stored then return nil, "shared dict: " .. (serr or "?") end
  end
  local gone = sorted_names(deleted)
  for i = #gone, 1, -1 do
    shared:delete("p:" .. gone[i])
    touched[#touched + 1] = gone[i]
  end
  local version = (shared:get("version") or 0) + 1
  local logged, lerr = shared:safe_set("log:" .. version, cjson.encode(touched))
  if not logged then return nil, "shared dict: " .. (lerr or "?") end
  shared:delete("log:" .. (version - LOG_KEEP))
  shared:set("static", update.static)
  shared:set("version", version)
  return version
end

-- Control side: the whole state as one document (it replaces every part).
function _M.store(body)
  local doc, err = cjson.decode(body)
  if not doc then return nil, "invalid JSON: " .. (err or "?") end
  return _M.apply_delta({ static = doc.static, replace = true, set = parts_of(doc) })
end

-- Control side: an update as JSON (see apply_delta).
function _M.store_delta(body)
  local update, err = cjson.decode(body)
  if not update then return nil, "invalid JSON: " .. (err or "?") end
  return _M.apply_delta(update)
end

return _M
