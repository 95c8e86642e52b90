-- Request matching (agc.match): paths, methods, headers, query parameters, and
-- the first match in precedence order.
local t = require("t")
local f = require("fixtures")
local match = require("agc.match")

local function request(path, fields)
  fields = fields or {}
  return match.view(path, fields.method or "GET",
    function() return fields.headers or {} end,
    function() return fields.args or {} end)
end

local function matches(m, path, fields)
  local rule = f.rules(f.rule(m))[1]
  return match.rule_matches(rule, request(path, fields))
end

local T = {}

function T.exact_path_matches_only_itself()
  t.truthy(matches(f.path("Exact", "/a"), "/a"))
  t.falsy(matches(f.path("Exact", "/a"), "/a/"))
  t.falsy(matches(f.path("Exact", "/a"), "/ab"))
end

function T.path_prefix_matches_whole_segments()
  local m = f.path("PathPrefix", "/v2")
  for _, p in ipairs({ "/v2", "/v2/", "/v2/x" }) do t.truthy(matches(m, p), p) end
  for _, p in ipairs({ "/v2x", "/v", "/" }) do t.falsy(matches(m, p), p) end
end

function T.path_prefix_with_a_trailing_slash_matches_the_bare_segment()
  local m = f.path("PathPrefix", "/v2/")
  for _, p in ipairs({ "/v2", "/v2/", "/v2/x" }) do t.truthy(matches(m, p), p) end
  t.falsy(matches(m, "/v2x"))
end

function T.root_prefix_matches_every_path()
  for _, p in ipairs({ "/", "/a", "/a/b" }) do t.truthy(matches(f.path("PathPrefix", "/"), p), p) end
end

function T.regular_expression_path_must_match_whole()
  local m = f.path("RegularExpression", "/api/v[0-9]+")
  t.truthy(matches(m, "/api/v12"))
  t.falsy(matches(m, "/api/v12/x"))
  t.falsy(matches(m, "/x/api/v1"))
end

function T.method_must_be_equal_when_given()
  local m = f.path("PathPrefix", "/")
  m.method = "POST"
  t.truthy(matches(m, "/", { method = "POST" }))
  t.falsy(matches(m, "/", { method = "GET" }))
end

function T.header_names_are_case_insensitive_values_exact()
  local m = f.path("PathPrefix", "/")
  m.headers = { { type = "Exact", name = "X-Version", value = "2" } }
  t.truthy(matches(m, "/", { headers = { ["x-version"] = "2" } }))
  t.falsy(matches(m, "/", { headers = { ["x-version"] = "22" } }))
  t.falsy(matches(m, "/", { headers = {} }))
end

function T.a_repeated_header_compares_as_its_joined_values()
  local m = f.path("PathPrefix", "/")
  m.headers = { { type = "Exact", name = "x-a", value = "1,2" } }
  t.truthy(matches(m, "/", { headers = { ["x-a"] = { "1", "2" } } }))
end

function T.header_regular_expressions_search_the_value()
  local m = f.path("PathPrefix", "/")
  m.headers = { { type = "RegularExpression", name = "user-agent", value = "curl/[0-9]" } }
  t.truthy(matches(m, "/", { headers = { ["user-agent"] = "my curl/8.1" } }))
  t.falsy(matches(m, "/", { headers = { ["user-agent"] = "wget" } }))
end

function T.all_headers_must_match()
  local m = f.path("PathPrefix", "/")
  m.headers = { { type = "Exact", name = "a", value = "1" }, { type = "Exact", name = "b", value = "2" } }
  t.truthy(matches(m, "/", { headers = { a = "1", b = "2" } }))
  t.falsy(matches(m, "/", { headers = { a = "1" } }))
end

function T.query_parameters_first_value_and_valueless()
  local m = f.path("PathPrefix", "/")
  m.query = { { type = "Exact", name = "v", value = "1" } }
  t.truthy(matches(m, "/", { args = { v = "1" } }))
  t.truthy(matches(m, "/", { args = { v = { "1", "2" } } }))
  t.falsy(matches(m, "/", { args = { v = { "2", "1" } } }))
  t.falsy(matches(m, "/", { args = { V = "1" } }), "names are case-sensitive")
  m.query = { { type = "Exact", name = "debug", value = "" } }
  t.truthy(matches(m, "/", { args = { debug = true } }))
end

function T.headers_and_arguments_are_read_only_when_needed_and_once()
  local reads = { headers = 0, args = 0 }
  local rules = f.rules(
    f.rule(f.path("Exact", "/plain")),
    f.rule({ path = { type = "PathPrefix", value = "/" },
             headers = { { type = "Exact", name = "a", value = "no" } } }),
    f.rule({ path = { type = "PathPrefix", value = "/" },
             headers = { { type = "Exact", name = "a", value = "yes" } },
             query = { { type = "Exact", name = "q", value = "1" } } }))
  local function req(path)
    reads = { headers = 0, args = 0 }
    return match.view(path, "GET",
      function() reads.headers = reads.headers + 1; return { a = "yes" } end,
      function() reads.args = reads.args + 1; return { q = "1" } end)
  end
  t.eq(match.first_match(rules, req("/plain")), rules[1])
  t.eq(reads, { headers = 0, args = 0 })
  t.eq(match.first_match(rules, req("/other")), rules[3])
  t.eq(reads, { headers = 1, args = 1 })
end

function T.the_first_matching_rule_in_precedence_order_wins()
  -- the controller sends rules in precedence order; the router never reorders
  local rules = f.rules(
    f.rule(f.path("Exact", "/a"), { route = "default/exact" }),
    f.rule(f.path("PathPrefix", "/a"), { route = "default/longer-prefix" }),
    f.rule(f.path("PathPrefix", "/"), { route = "default/catch-all" }))
  t.eq(match.first_match(rules, request("/a")).route, "default/exact")
  t.eq(match.first_match(rules, request("/a/b")).route, "default/longer-prefix")
  t.eq(match.first_match(rules, request("/b")).route, "default/catch-all")
end

function T.no_rule_matches()
  t.eq(match.first_match(f.rules(f.rule(f.path("Exact", "/a"))), request("/b")), nil)
end

return T
