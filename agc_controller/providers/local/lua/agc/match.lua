-- Which rule a request takes: the first of its host's rules (compiled by
-- config.lua, in Gateway API precedence order) whose path, method, headers and
-- query parameters all match.
--
-- A request is seen through a view (`view`): path and method, and functions
-- that read the headers and query arguments. They are called only when a
-- candidate rule matches on them (most rules do not), and then once per request.
local re_find = ngx.re.find

local _M = {}

-- A multi-valued header compares as its values joined by commas.
local function header_value(headers, name)
  local v = headers[name]
  if type(v) == "table" then return table.concat(v, ",") end
  return v
end

-- A query argument given several times compares as its first value, one with
-- no value ("?debug") as the empty string.
local function arg_value(args, name)
  local v = args[name]
  if type(v) == "table" then v = v[1] end
  if v == true then v = "" end
  return v
end

local function value_matches(kind, expected, actual)
  if actual == nil then return false end
  if kind == "Exact" then return actual == expected end
  return re_find(actual, expected, "jo") ~= nil
end

function _M.path_matches(rule, path)
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

-- `read_headers()` returns the request headers by lower-cased name,
-- `read_args()` the query arguments (as ngx.req.get_headers / get_uri_args).
function _M.view(path, method, read_headers, read_args)
  return { path = path, method = method, read_headers = read_headers, read_args = read_args }
end

local function headers_of(req)
  req.headers = req.headers or req.read_headers()
  return req.headers
end

local function args_of(req)
  req.args = req.args or req.read_args()
  return req.args
end

function _M.rule_matches(rule, req)
  if not _M.path_matches(rule, req.path) then return false end
  if rule.method and rule.method ~= req.method then return false end
  for _, h in ipairs(rule.headers) do
    if not value_matches(h.type, h.value, header_value(headers_of(req), h.name)) then
      return false
    end
  end
  for _, q in ipairs(rule.query) do
    if not value_matches(q.type, q.value, arg_value(args_of(req), q.name)) then return false end
  end
  return true
end

function _M.first_match(rules, req)
  for _, rule in ipairs(rules) do
    if _M.rule_matches(rule, req) then return rule end
  end
  return nil
end

return _M
