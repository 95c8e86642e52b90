-- A rule's filters: header modifiers, redirects, URL rewrites and CORS.
--
-- What can be computed from the rule and the request alone is a function that
-- returns it (a Location, a rewritten path, CORS headers); the router applies
-- the result. Header modifiers write through NGINX's request API and a
-- response header table (ngx.header), in the order set, add, remove.
local ngx_req = ngx.req

local _M = {}

-- The ngx.var name of request header `name` ("X-Api-Key": "http_x_api_key").
function _M.header_var(name)
  return "http_" .. name:lower():gsub("-", "_")
end

-- Whether `path` may go into a request line the data plane writes itself (health
-- probes, authorization checks): URL path and query characters only, from "/".
function _M.is_request_path(path)
  return type(path) == "string" and path:match("^/[%w%-%._~!%$&'%(%)%*%+,;=:@%%/%?]*$") ~= nil
end

function _M.apply_request_headers(m)
  if not m then return end
  for _, p in ipairs(m.set) do ngx_req.set_header(p.name, p.value) end
  for _, p in ipairs(m.add) do
    local existing = ngx_req.get_headers()[p.lookup]
    if type(existing) == "table" then existing = table.concat(existing, ",") end
    ngx_req.set_header(p.name, existing and (existing .. "," .. p.value) or p.value)
  end
  for _, name in ipairs(m.remove) do ngx_req.clear_header(name) end
end

-- `h` is ngx.header in the header filter: a response header added to one that
-- exists becomes a second header line, not a comma-joined value.
function _M.apply_response_headers(m, h)
  if not m then return end
  for _, p in ipairs(m.set) do h[p.name] = p.value end
  for _, p in ipairs(m.add) do _M.append_header(h, p.name, p.value) end
  for _, name in ipairs(m.remove) do h[name] = nil end
end

function _M.append_header(h, name, value)
  local existing = h[name]
  if type(existing) == "table" then
    table.insert(existing, value)
    h[name] = existing
  elseif existing then
    h[name] = { existing, value }
  else
    h[name] = value
  end
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

-- The path a redirect or rewrite (`spec`) makes of `path`, which matched
-- `rule`; nil when it keeps the path.
function _M.new_path(spec, rule, path)
  if spec.path_type == "ReplaceFullPath" then return spec.path_value end
  if spec.path_type == "ReplaceRegexMatch" then
    -- the first match is replaced (the pattern was compiled when the rule was)
    local new, n = ngx.re.sub(path, spec.path_pattern, spec.path_value, "jo")
    if not n or n == 0 then return nil end
    if new:sub(1, 1) ~= "/" then new = "/" .. new end
    return new
  end
  if spec.path_type == "ReplacePrefixMatch" then
    return replace_prefix(path, rule.prefix or "", spec.path_value)
  end
  return nil
end

-- The Location of `rule`'s redirect. `req` holds what the request brings:
-- scheme, host, path, args (the query string) and listener_port (the port the
-- Gateway declared for the listener, kept when the scheme is).
function _M.redirect_location(rule, req)
  local r = rule.redirect
  local scheme = r.scheme or req.scheme
  local port = r.port
  if not port then
    if r.scheme then
      port = (r.scheme == "https") and 443 or 80
    else
      port = req.listener_port
    end
  end
  local location = scheme .. "://" .. (r.hostname or req.host)
  if not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)) then
    location = location .. ":" .. port
  end
  location = location .. (_M.new_path(r, rule, req.path) or req.path)
  if req.args and req.args ~= "" then location = location .. "?" .. req.args end
  return location
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

function _M.origin_allowed(cors, origin)
  for _, o in ipairs(cors.allow_origins or {}) do
    if origin_matches(o, origin) then return true end
  end
  return false
end

-- The answer to a preflight from an allowed `origin`. With credentials, a "*"
-- is not allowed in the answer: it echoes what the preflight asked for
-- (`method`, `headers`: its Access-Control-Request-* headers).
function _M.preflight_headers(cors, origin, method, headers)
  local h = {}
  h["Access-Control-Allow-Origin"] = cors.allow_credentials and origin or
    ((cors.allow_origins or {})[1] == "*" and "*" or origin)
  if cors.allow_credentials then h["Access-Control-Allow-Credentials"] = "true" end
  local methods = table.concat(cors.allow_methods or {}, ", ")
  if methods == "*" and cors.allow_credentials then methods = method or "" end
  h["Access-Control-Allow-Methods"] = methods
  local allowed = table.concat(cors.allow_headers or {}, ", ")
  if allowed == "*" and cors.allow_credentials then allowed = headers or "" end
  if allowed ~= "" then h["Access-Control-Allow-Headers"] = allowed end
  if cors.expose_headers and #cors.expose_headers > 0 then
    h["Access-Control-Expose-Headers"] = table.concat(cors.expose_headers, ", ")
  end
  h["Access-Control-Max-Age"] = tostring(cors.max_age or 5)
  return h
end

-- The CORS headers of an ordinary response to an allowed `origin`.
function _M.response_cors_headers(cors, origin)
  local h = {}
  local any = (cors.allow_origins or {})[1] == "*" and not cors.allow_credentials
  h["Access-Control-Allow-Origin"] = any and "*" or origin
  if cors.allow_credentials then h["Access-Control-Allow-Credentials"] = "true" end
  if cors.expose_headers and #cors.expose_headers > 0 then
    h["Access-Control-Expose-Headers"] = table.concat(cors.expose_headers, ", ")
  end
  return h
end

return _M
