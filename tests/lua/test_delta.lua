-- Updates by parts (config.apply_delta) and a worker taking them in (config.get):
-- only what an update names is compiled again, a rule changed in place reaches
-- every host listing it, and an update that would leave a dangling reference is
-- refused whole.
local t = require("t")
local config = require("agc.config")

local shared = ngx.shared.agc_config

local function rule(path)
  return { route = "ns/r", match = { path = { type = "PathPrefix", value = path } },
           backends = { { id = "svc", weight = 1, valid = true } } }
end

local function host(listener, hostname, ids)
  return { listener = listener, hostname = hostname, rules = ids }
end

local function base()
  return {
    static = config.static_id(),
    replace = true,
    set = {
      meta = { frontends = { ["80"] = { { name = "http", port = 80 } } } },
      ["b:svc"] = { protocol = "http", endpoints = { { addr = "10.0.0.1", port = 8080 } } },
      ["r:any"] = rule("/any"),
      ["r:a"] = rule("/a"),
      ["h:http:"] = host("http", nil, { "any" }),
      ["h:http:a.example"] = host("http", "a.example", { "a", "any" }),
    },
  }
end

local function paths(state, hostname)
  local out = {}
  for i, r in ipairs(config.lookup(state.hosts.http, hostname).rules) do out[i] = r.path end
  return out
end

local T = {}

function T.a_replace_then_a_delta_reach_the_worker()
  t.truthy(config.apply_delta(base()))
  local state = config.get()
  t.eq(paths(state, "a.example"), { "/a", "/any" })
  t.eq(paths(state, "b.example"), { "/any" })
  local before = state.rules.a
  t.truthy(config.apply_delta({
    static = config.static_id(),
    set = {
      ["r:b"] = rule("/b"),
      ["h:http:b.example"] = host("http", "b.example", { "b", "any" }),
    },
  }))
  state = config.get()
  t.eq(paths(state, "b.example"), { "/b", "/any" })
  t.truthy(state.rules.a == before, "an untouched rule is not compiled again")
end

function T.a_rule_changed_in_place_reaches_every_host_listing_it()
  t.truthy(config.apply_delta(base()))
  local state = config.get()
  local held = config.lookup(state.hosts.http, "a.example").rules[2]
  t.truthy(config.apply_delta({ static = config.static_id(), set = { ["r:any"] = rule("/else") } }))
  state = config.get()
  t.eq(paths(state, "a.example"), { "/a", "/else" })
  t.eq(paths(state, "z.example"), { "/else" })
  t.truthy(held == state.rules.any, "the same table, updated")
end

function T.deleting_a_host_and_its_rule()
  t.truthy(config.apply_delta(base()))
  t.truthy(config.apply_delta({
    static = config.static_id(), delete = { "h:http:a.example", "r:a" },
  }))
  local state = config.get()
  t.eq(paths(state, "a.example"), { "/any" }, "served by the catch-all again")
  t.eq(state.rules.a, nil)
  t.eq(shared:get("p:r:a"), nil)
end

function T.a_dangling_reference_or_bad_part_is_refused_whole()
  local version = assert(config.apply_delta(base()))
  local none, err = config.apply_delta({
    static = config.static_id(),
    set = { ["h:http:c.example"] = host("http", "c.example", { "missing" }) },
  })
  t.eq(none, nil)
  t.truthy(err:find("unknown rule missing", 1, true), err)
  none, err = config.apply_delta({
    static = config.static_id(),
    set = { ["r:x"] = { route = "ns/x", match = { path = { type = "RegularExpression", value = "[" } } },
            ["r:y"] = rule("/y") },
  })
  t.eq(none, nil)
  t.truthy(err:find("invalid path regex", 1, true), err)
  t.eq(shared:get("p:r:y"), nil, "nothing of a refused update is stored")
  t.eq(shared:get("version"), version)
end

function T.a_worker_too_far_behind_rebuilds_from_every_part()
  t.truthy(config.apply_delta(base()))
  config.get()
  local version = assert(config.apply_delta({
    static = config.static_id(), set = { ["r:any"] = rule("/later") },
  }))
  shared:delete("log:" .. version)  -- as if it had been dropped long ago
  local state = config.get()
  t.eq(paths(state, "b.example"), { "/later" })
  t.eq(paths(state, "a.example"), { "/a", "/later" })
end

function T.a_replace_removes_what_it_does_not_name()
  t.truthy(config.apply_delta(base()))
  local update = base()
  update.set["h:http:a.example"] = nil
  update.set["r:a"] = nil
  t.truthy(config.apply_delta(update))
  t.eq(shared:get("p:r:a"), nil)
  t.eq(paths(config.get(), "a.example"), { "/any" })
end

function T.many_updates_between_two_requests()
  t.truthy(config.apply_delta(base()))
  config.get()
  for i = 1, 40 do
    t.truthy(config.apply_delta({
      static = config.static_id(),
      set = { ["r:h" .. i] = rule("/h" .. i), ["h:http:h" .. i .. ".example"] = host("http", "h" .. i .. ".example", { "h" .. i, "any" }) },
    }))
  end
  local state = config.get()
  t.eq(paths(state, "h40.example"), { "/h40", "/any" })
  t.eq(paths(state, "h1.example"), { "/h1", "/any" })
end

return T
