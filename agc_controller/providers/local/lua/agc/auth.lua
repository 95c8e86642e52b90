-- AuthPolicy on the data plane: who may send a request to a rule.
--
-- An AuthPolicy the controller found invalid arrives with `refuse`: every
-- request is answered 500 (it fails closed). Otherwise, in order: the
-- client's address against the deny list, then the allow list (403); then its
-- credentials, an API key or HTTP basic (401). The crypto is
-- the process's own libraries through LuaJIT FFI (NGINX links them): OpenSSL's
-- SHA256 for API keys, which the state holds as digests only, and libcrypt's
-- crypt(3) for htpasswd hashes (bcrypt, SHA-256/512-crypt; {SHA} is a SHA-1
-- digest). A bcrypt check costs the worker milliseconds, so a passed check is
-- remembered for CACHE_TTL seconds per worker (keyed by a digest of user,
-- password and hash: a changed password or hash is checked afresh).
--
-- The client's address is the peer's (behind a front server of ours, the one
-- the PROXY protocol carries); when the peer is a trusted proxy, it is the
-- rightmost X-Forwarded-For entry that is not one.
local ffi = require("ffi")
local bit = require("bit")
local filters = require("agc.filters")
local lrucache = require("resty.lrucache")
local jwt = require("agc.jwt")

ffi.cdef [[
int inet_pton(int af, const char *src, void *dst);
char *crypt(const char *key, const char *salt);
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
]]

local C = ffi.C
-- the internal location that sends a check to the authorization Service
-- (static.py): the path after it is the check's path
local CHECK_LOCATION = "/_agc_auth"
-- answer headers of a refusing authorization Service the client gets too
local REFUSAL_HEADERS = { "WWW-Authenticate", "Location", "Set-Cookie", "Content-Type" }
local AF_INET, AF_INET6 = 2, 10
local CACHE_TTL = 60

local _M = {}

local address_buf = ffi.new("unsigned char[16]")
local digest_buf = ffi.new("unsigned char[32]")
local passed = lrucache.new(4096)

-- The 4 or 16 bytes of an IP address written as text; nil if it is not one.
function _M.address_bytes(text)
  if C.inet_pton(AF_INET, text, address_buf) == 1 then return ffi.string(address_buf, 4) end
  if C.inet_pton(AF_INET6, text, address_buf) == 1 then return ffi.string(address_buf, 16) end
  return nil
end

local function compile_nets(cidrs)
  local nets = {}
  for i, cidr in ipairs(cidrs or {}) do
    local text, prefix = cidr:match("^([^/]+)/(%d+)$")
    local bytes = text and _M.address_bytes(text)
    prefix = tonumber(prefix)
    if not bytes or prefix > #bytes * 8 then return nil, "auth: invalid CIDR " .. cidr end
    nets[i] = { bytes = bytes, prefix = prefix }
  end
  return nets
end

-- Whether the address `bytes` is in one of `nets`.
function _M.in_nets(bytes, nets)
  for _, net in ipairs(nets) do
    if #net.bytes == #bytes then
      local full = math.floor(net.prefix / 8)
      if bytes:sub(1, full) == net.bytes:sub(1, full) then
        local rest = net.prefix % 8
        if rest == 0 then return true end
        local mask = bit.band(bit.lshift(0xff, 8 - rest), 0xff)
        if bit.band(bytes:byte(full + 1), mask) == bit.band(net.bytes:byte(full + 1), mask) then
          return true
        end
      end
    end
  end
  return false
end

local HEX32 = ("%02x"):rep(32)

function _M.sha256_hex(text)
  C.SHA256(text, #text, digest_buf)
  return HEX32:format(ffi.string(digest_buf, 32):byte(1, 32))
end

function _M.compile(a)
  if a == nil then return nil end
  local c = { refuse = a.refuse, api_keys = a.api_keys, users = a.users,
              client_header = a.client_header }
  local err
  for _, list in ipairs({ "deny", "allow", "trusted_proxies" }) do
    c[list], err = compile_nets(a[list])
    if err then return nil, err end
  end
  if #c.allow == 0 then c.allow = nil end
  if a.key_header then
    c.key_header = a.key_header
    c.key_var = filters.header_var(a.key_header)
  elseif a.key_query then
    c.key_query = a.key_query
    c.key_var = "arg_" .. a.key_query
  end
  if a.external then
    local e = a.external
    if not filters.is_request_path(e.path) then
      return nil, "auth: invalid external authorization path"
    end
    c.external = { backend = e.backend, uri = CHECK_LOCATION .. e.path,
                   headers = e.headers_to_backend or {}, timeout_ms = e.timeout_ms }
  end
  c.jwt, err = jwt.compile(a.jwt)
  if err then return nil, err end
  if a.realm then
    if a.realm:find('["\\%c]') then return nil, "auth: invalid realm" end
    c.challenge = 'Basic realm="' .. a.realm .. '", charset="UTF-8"'
  end
  return c
end

-- The client's address as bytes (see the module comment); `forwarded` is the
-- X-Forwarded-For header's value, if any.
function _M.client_address(peer, forwarded, trusted)
  if #trusted == 0 or not forwarded or not _M.in_nets(peer, trusted) then return peer end
  local entries = {}
  for entry in forwarded:gmatch("[^,%s]+") do entries[#entries + 1] = entry end
  local client = peer
  for i = #entries, 1, -1 do
    local bytes = _M.address_bytes(entries[i])
    if not bytes then break end
    client = bytes
    if not _M.in_nets(bytes, trusted) then break end
  end
  return client
end

-- Whether `password` matches the htpasswd hash `hashed`.
function _M.password_matches(hashed, password)
  if hashed:sub(1, 5) == "{SHA}" then
    return ngx.encode_base64(ngx.sha1_bin(password)) == hashed:sub(6)
  end
  local result = C.crypt(password, hashed)
  return result ~= nil and ffi.string(result) == hashed
end

local function basic_credentials()
  local header = ngx.var.http_authorization
  local encoded = header and header:match("^[Bb]asic%s+(%S+)$")
  local decoded = encoded and ngx.decode_base64(encoded)
  if not decoded then return nil end
  return decoded:match("^([^:]*):(.*)$")
end

local function refuse(status, challenge)
  if challenge then ngx.header["WWW-Authenticate"] = challenge end
  ngx.exit(status)
  return false
end

-- Check the request against `c`: true to go on; otherwise it is answered here.
function _M.check(c)
  -- an AuthPolicy that cannot be honoured fails closed
  if c.refuse then return refuse(500) end
  if #c.deny > 0 or c.allow then
    local var = ngx.var
    local client = _M.client_address(var.binary_remote_addr, var.http_x_forwarded_for,
      c.trusted_proxies)
    if _M.in_nets(client, c.deny) or (c.allow and not _M.in_nets(client, c.allow)) then
      return refuse(403)
    end
  end
  if c.api_keys then
    local key = ngx.var[c.key_var]
    local client = key and key ~= "" and c.api_keys[_M.sha256_hex(key)]
    if not client then return refuse(401) end
    -- the key stays with the gateway; the backend may learn whose it was
    if c.key_header then
      ngx.req.clear_header(c.key_header)
    else
      local args = ngx.req.get_uri_args(100)
      args[c.key_query] = nil
      ngx.req.set_uri_args(args)
    end
    if c.client_header then ngx.req.set_header(c.client_header, client) end
  end
  if c.users then
    local user, password = basic_credentials()
    local hashed = user and c.users[user]
    if not hashed then return refuse(401, c.challenge) end
    local memo = _M.sha256_hex(user .. "\0" .. password .. "\0" .. hashed)
    if not passed:get(memo) then
      if not _M.password_matches(hashed, password) then return refuse(401, c.challenge) end
      passed:set(memo, true, CACHE_TTL)
    end
  end
  if c.jwt then return _M.bearer(c.jwt) end
  if c.external then return _M.ask(c.external) end
  return true
end

-- A JWT in `Authorization: Bearer`: 401 without one or with an invalid one
-- (RFC 6750's challenge); a valid one's chosen claims go onto the request.
function _M.bearer(providers)
  local token = (ngx.var.http_authorization or ""):match("^[Bb]earer%s+(%S+)$")
  if not token then return refuse(401, "Bearer") end
  local claims, provider = jwt.check(providers, token, ngx.time())
  if not claims then
    ngx.log(ngx.INFO, "agc: bearer token refused: ", provider)
    return refuse(401, 'Bearer error="invalid_token"')
  end
  -- a rate limit keyed by a claim reads the verified ones (agc.ratelimit)
  ngx.ctx.jwt_claims = claims
  for _, pair in ipairs(provider.claims) do
    local value = claims[pair[1]]
    local kind = type(value)
    if kind == "string" or kind == "number" or kind == "boolean" then
      ngx.req.set_header(pair[2], tostring(value))
    else
      ngx.req.clear_header(pair[2])
    end
  end
  return true
end

-- External authorization: GET the check path from the Service with the
-- request's headers (and X-Original-URI / -Method), no body. A 2xx lets the
-- request on with the answer's `headers` copied onto it; any other answer is
-- the client's (its status, body and refusal headers); none (the Service down
-- or slow) is 503 — never a pass.
function _M.ask(e)
  local req = ngx.req
  req.set_header("X-Original-URI", ngx.var.request_uri)
  req.set_header("X-Original-Method", req.get_method())
  local res = ngx.location.capture(e.uri, {
    method = ngx.HTTP_GET,
    copy_all_vars = true,
    ctx = { backend = e.backend, timeout_ms = e.timeout_ms },
  })
  req.clear_header("X-Original-URI")
  req.clear_header("X-Original-Method")
  local status = res and res.status or 0
  if status >= 200 and status < 300 then
    for _, name in ipairs(e.headers) do
      local value = res.header[name]
      if type(value) == "table" then value = value[1] end
      req.set_header(name, value)
    end
    return true
  end
  if status < 300 or status >= 500 or res.truncated then
    ngx.header["X-AGC-Auth"] = "unavailable"
    return refuse(503)
  end
  for _, name in ipairs(REFUSAL_HEADERS) do
    if res.header[name] then ngx.header[name] = res.header[name] end
  end
  ngx.status = status
  ngx.print(res.body or "")
  ngx.exit(status)
  return false
end

return _M
