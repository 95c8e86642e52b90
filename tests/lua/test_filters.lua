-- Filters (agc.filters): header modifiers, redirects, rewrites, CORS.
local t = require("t")
local f = require("fixtures")
local filters = require("agc.filters")

local function compiled(fields)
  return f.rules(f.rule(f.path("PathPrefix", "/api"), fields))[1]
end

local function modifier(m) return compiled({ req = m }).req end

local function response_header(name)
  return ngx.header[name]
end

local T = {}

function T.request_headers_set_add_remove()
  ngx.req.set_header("X-Existing", "1")
  ngx.req.set_header("X-Gone", "x")
  filters.apply_request_headers(modifier({
    set = { { name = "X-Set", value = "s" } },
    add = { { name = "x-existing", value = "2" }, { name = "X-New", value = "n" } },
    remove = { "X-GONE" },
  }))
  local h = ngx.req.get_headers()
  t.eq(h["x-set"], "s")
  t.eq(h["x-existing"], "1,2", "add joins an existing value, whatever the name's case")
  t.eq(h["x-new"], "n")
  t.eq(h["x-gone"], nil)
end

function T.no_modifier_is_a_no_op()
  filters.apply_request_headers(nil)
  filters.apply_response_headers(nil, ngx.header)
end

function T.response_headers_set_add_remove()
  ngx.header["X-Resp-Existing"] = "1"
  ngx.header["X-Resp-Gone"] = "x"
  local m = compiled({ resp = {
    set = { { name = "X-Resp-Set", value = "s" } },
    add = { { name = "X-Resp-Existing", value = "2" }, { name = "X-Resp-New", value = "n" } },
    remove = { "x-resp-gone" },
  } }).resp
  filters.apply_response_headers(m, ngx.header)
  t.eq(response_header("X-Resp-Set"), "s")
  t.eq(response_header("X-Resp-Existing"), { "1", "2" }, "add makes a second header line")
  t.eq(response_header("X-Resp-New"), "n")
  t.eq(response_header("X-Resp-Gone"), nil)
  filters.append_header(ngx.header, "X-Resp-Existing", "3")
  t.eq(response_header("X-Resp-Existing"), { "1", "2", "3" })
  for _, name in ipairs({ "X-Resp-Set", "X-Resp-Existing", "X-Resp-New" }) do ngx.header[name] = nil end
end

function T.replace_prefix_match_keeps_the_rest_of_the_path()
  local rule = compiled()
  local function rewritten(replacement, path)
    return filters.new_path({ path_type = "ReplacePrefixMatch", path_value = replacement }, rule, path)
  end
  t.eq(rewritten("/v2", "/api/users"), "/v2/users")
  t.eq(rewritten("/v2/", "/api/users"), "/v2/users")
  t.eq(rewritten("/v2", "/api"), "/v2")
  t.eq(rewritten("/", "/api/users"), "/users")
  t.eq(rewritten("/", "/api"), "/")
  t.eq(rewritten("", "/api/users"), "/users")
end

function T.replace_regex_match_replaces_the_first_match_with_its_groups()
  local rule = compiled()
  local function rewritten(pattern, template, path)
    return filters.new_path(
      { path_type = "ReplaceRegexMatch", path_pattern = pattern, path_value = template }, rule, path
    )
  end
  -- ingress-nginx's rewrite-target /$2 on path /something(/|$)(.*), the whole path
  t.eq(rewritten("(?i)^(?:/something(/|$)(.*)).*", "/${2}", "/Something/new/x"), "/new/x")
  t.eq(rewritten("(?i)^(?:/something(/|$)(.*)).*", "/${2}", "/something"), "/")
  -- a part of the path; a literal dollar
  t.eq(rewritten("/v[0-9]+/", "/api$$/", "/a/v2/b"), "/a/api$/b")
  -- a group that brings no leading "/": one is added
  t.eq(rewritten("^/v1/?(.*)$", "${1}", "/v1/users"), "/users")
  t.eq(rewritten("^/v1/?(.*)$", "${1}", "/v1"), "/")
  -- no match: the path is kept
  t.eq(rewritten("^/other", "/x", "/api/a"), nil)
end

function T.replace_full_path_and_no_path()
  local rule = compiled()
  t.eq(filters.new_path({ path_type = "ReplaceFullPath", path_value = "/x" }, rule, "/api/a"), "/x")
  t.eq(filters.new_path({ hostname = "h" }, rule, "/api/a"), nil)
end

local function location(redirect, req)
  local rule = compiled({ redirect = redirect })
  local base = { scheme = "http", host = "a.example", path = "/api/x", listener_port = 80 }
  for k, v in pairs(req or {}) do base[k] = v end
  return filters.redirect_location(rule, base)
end

function T.redirect_keeps_what_it_does_not_set()
  t.eq(location({ status_code = 302 }), "http://a.example/api/x")
  t.eq(location({ status_code = 302 }, { args = "q=1" }), "http://a.example/api/x?q=1")
  t.eq(location({ status_code = 302 }, { listener_port = 8080 }), "http://a.example:8080/api/x")
  t.eq(location({ status_code = 301, hostname = "b.example" }), "http://b.example/api/x")
end

function T.redirect_scheme_change_takes_the_scheme_default_port()
  t.eq(location({ status_code = 301, scheme = "https" }, { listener_port = 8080 }), "https://a.example/api/x")
  t.eq(location({ status_code = 301, scheme = "https", port = 8443 }), "https://a.example:8443/api/x")
  t.eq(location({ status_code = 301, port = 443 }, { scheme = "https" }), "https://a.example/api/x")
end

function T.redirect_path()
  t.eq(location({ status_code = 302, path_type = "ReplaceFullPath", path_value = "/new" }), "http://a.example/new")
  t.eq(location({ status_code = 302, path_type = "ReplacePrefixMatch", path_value = "/v2" }),
    "http://a.example/v2/x")
end

function T.cors_origins()
  local cors = { allow_origins = { "https://exact.example", "https://*.wild.example", "http://*:8080" } }
  t.truthy(filters.origin_allowed(cors, "https://exact.example"))
  t.falsy(filters.origin_allowed(cors, "http://exact.example"))
  t.truthy(filters.origin_allowed(cors, "https://a.wild.example"))
  t.truthy(filters.origin_allowed(cors, "https://a.b.wild.example"), "one or more labels")
  t.falsy(filters.origin_allowed(cors, "https://wild.example"), "not the bare domain")
  t.falsy(filters.origin_allowed(cors, "https://evil/x.wild.example"))
  t.falsy(filters.origin_allowed({}, "https://exact.example"))
  t.truthy(filters.origin_allowed({ allow_origins = { "*" } }, "https://any.example"))
end

function T.cors_preflight_answer()
  local cors = { allow_origins = { "*" }, allow_methods = { "GET", "PUT" }, allow_headers = { "x-a" },
                 expose_headers = { "x-b", "x-c" }, max_age = 60 }
  t.eq(filters.preflight_headers(cors, "https://o.example", "PUT", "x-a"), {
    ["Access-Control-Allow-Origin"] = "*",
    ["Access-Control-Allow-Methods"] = "GET, PUT",
    ["Access-Control-Allow-Headers"] = "x-a",
    ["Access-Control-Expose-Headers"] = "x-b, x-c",
    ["Access-Control-Max-Age"] = "60",
  })
end

function T.cors_preflight_with_credentials_echoes_what_was_asked()
  local cors = { allow_origins = { "*" }, allow_methods = { "*" }, allow_headers = { "*" },
                 allow_credentials = true }
  t.eq(filters.preflight_headers(cors, "https://o.example", "DELETE", "x-q"), {
    ["Access-Control-Allow-Origin"] = "https://o.example",
    ["Access-Control-Allow-Credentials"] = "true",
    ["Access-Control-Allow-Methods"] = "DELETE",
    ["Access-Control-Allow-Headers"] = "x-q",
    ["Access-Control-Max-Age"] = "5",
  })
end

function T.cors_response_headers()
  t.eq(filters.response_cors_headers({ allow_origins = { "*" } }, "https://o.example"),
    { ["Access-Control-Allow-Origin"] = "*" })
  t.eq(filters.response_cors_headers({ allow_origins = { "*" }, allow_credentials = true,
                                       expose_headers = { "x-b" } }, "https://o.example"), {
    ["Access-Control-Allow-Origin"] = "https://o.example",
    ["Access-Control-Allow-Credentials"] = "true",
    ["Access-Control-Expose-Headers"] = "x-b",
  })
end

return T
