-- Compiling the router state (agc.config): hostname lookup, defaults for what
-- the controller leaves out, endpoint ids, refused regexes.
local t = require("t")
local f = require("fixtures")
local config = require("agc.config")

local T = {}

-- a host per name; false stands for the catch-all (no hostname)
local function index(...)
  local hosts = {}
  for i, name in ipairs({ ... }) do hosts[i] = { hostname = name or nil } end
  return f.state(hosts).hosts.http
end

local function found(idx, host)
  local hit = config.lookup(idx, host)
  return hit and (hit.hostname or "(any)")
end

function T.exact_names_win_over_wildcards()
  local idx = index("*.example.com", "a.example.com")
  t.eq(found(idx, "a.example.com"), "a.example.com")
  t.eq(found(idx, "b.example.com"), "*.example.com")
end

function T.the_longest_wildcard_wins_whatever_the_order()
  local idx = index("*.example.com", "*.a.example.com")
  t.eq(found(idx, "x.a.example.com"), "*.a.example.com")
  t.eq(found(idx, "x.b.example.com"), "*.example.com")
end

function T.a_wildcard_needs_a_label_before_its_suffix()
  local idx = index("*.example.com")
  t.eq(found(idx, "example.com"), nil)
  t.eq(found(idx, "a.b.example.com"), "*.example.com")
end

function T.the_catch_all_takes_the_rest()
  local idx = index(false, "a.example.com")
  t.eq(found(idx, "a.example.com"), "a.example.com")
  t.eq(found(idx, "other.example"), "(any)")
  t.eq(found(index("a.example.com"), "other.example"), nil)
end

function T.absent_lists_compile_to_empty_ones()
  local state = assert(config.compile(f.doc({
    frontends = { ["8080"] = { { name = "http", port = 80 } } },
    hosts = { http = { { hostname = "a.example", rules = { { route = "ns/r", match = { path = { type = "PathPrefix", value = "/" } } } } }, { hostname = "b.example" } } },
    backends = { b = { protocol = "http" } },
  })))
  local rule = config.lookup(state.hosts.http, "a.example").rules[1]
  t.eq({ #rule.backends, #rule.headers, #rule.query, #rule.mirrors, rule.total }, { 0, 0, 0, 0, 0 })
  t.eq(config.lookup(state.hosts.http, "b.example").rules, {})
  t.eq(state.backends.b.endpoints, {})
  t.eq(state.frontends[8080].list[1].port, 80, "frontends by bound port, a number")
  t.eq(state.certs, {})
  t.eq(state.cas, {})
end

function T.endpoints_get_stable_ids_for_session_cookies()
  local state = f.state({}, { b = { protocol = "http", endpoints = {
    { addr = "10.0.0.1", port = 80 }, { addr = "10.0.0.2", port = 80 } } } })
  local backend = state.backends.b
  local first = backend.endpoints[1]
  t.eq(first.id, ngx.md5("10.0.0.1:80"):sub(1, 16))
  t.eq(backend.by_id[first.id], first)
  t.truthy(first.id ~= backend.endpoints[2].id)
end

function T.header_names_compile_lower_cased_modifiers_keep_theirs()
  local rule = f.rules(f.rule({ path = { type = "Exact", value = "/" },
    headers = { { type = "Exact", name = "X-Mixed", value = "V" } } },
    { req = { set = { { name = "X-Out", value = "1" } } } }))[1]
  t.eq(rule.headers[1], { type = "Exact", name = "x-mixed", value = "V" })
  t.eq(rule.req.set[1], { name = "X-Out", value = "1", lookup = "x-out" })
end

function T.invalid_regexes_are_refused()
  local function refused(m)
    local state, err = config.compile(f.doc({ hosts = { http = { { rules = { f.rule(m) } } } } }))
    t.eq(state, nil)
    return err
  end
  t.truthy(refused(f.path("RegularExpression", "[")):find("invalid path regex", 1, true))
  local m = f.path("PathPrefix", "/")
  m.headers = { { type = "RegularExpression", name = "a", value = "[" } }
  t.truthy(refused(m):find("invalid header regex", 1, true))
  m = f.path("PathPrefix", "/")
  m.query = { { type = "RegularExpression", name = "a", value = "(?" } }
  t.truthy(refused(m):find("invalid query regex", 1, true))
end

function T.store_keeps_the_last_good_state()
  local good = '{"hosts":{"http":[{"rules":["r"]}]},"rules":{"r":{"route":"ns/r","match":{"path":{"type":"Exact","value":"/"}}}}}'
  local version = assert(config.store(good))
  local bad = good:gsub('"Exact","value":"/"', '"RegularExpression","value":"["')
  local none, err = config.store(bad)
  t.eq(none, nil)
  t.truthy(err:find("invalid path regex", 1, true))
  t.eq(ngx.shared.agc_config:get("version"), version)
  t.eq(select(2, config.store("{")):sub(1, 12), "invalid JSON")
end

return T
