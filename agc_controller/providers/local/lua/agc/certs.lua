-- ssl_certificate_by_lua: serve the certificate of the most specific listener
-- on this port matching the SNI name, and ask for a client certificate when
-- that listener validates clients (frontend mTLS). Parsed certificates are
-- cached until the listeners or certificates change (meta_version).
local ssl = require("ngx.ssl")
local config = require("agc.config")

local _M = {}
local parsed, parsed_version = {}, -1

local function material(state, index)
  if parsed_version ~= state.meta_version then parsed, parsed_version = {}, state.meta_version end
  local hit = parsed[index]
  if hit then return hit end
  local entry = state.certs[index + 1]
  local cert, err = ssl.parse_pem_cert(entry.cert)
  if not cert then return nil, err end
  local key, kerr = ssl.parse_pem_priv_key(entry.key)
  if not key then return nil, kerr end
  hit = { cert = cert, key = key }
  parsed[index] = hit
  return hit
end

-- The port the client connected to. ngx.var is not available during the
-- handshake; ngx.ssl knows the port, or, behind the stream server of a port that
-- TLS passthrough shares (static.py), the unix socket's name says it.
local function bound_port()
  local port = ssl.server_port()
  if port and port ~= 0 then return port end
  local addr, kind = ssl.raw_server_addr()
  if kind == "unix" and addr then
    return tonumber(addr:match("https%-(%d+)%.sock$"))
  end
end

function _M.select()
  local state = config.get()
  if not state then return ngx.exit(ngx.ERROR) end
  local port = bound_port()
  local frontends = port and state.frontends[port]
  if not frontends then return ngx.exit(ngx.ERROR) end
  local sni = ssl.server_name()
  local frontend = sni and config.lookup(frontends, sni:lower()) or frontends.any
  if not frontend then
    -- no listener for this name: fall back to the port's first certificate
    for _, fe in ipairs(frontends.list) do
      if fe.certs and #fe.certs > 0 then frontend = fe break end
    end
  end
  if not frontend or not frontend.certs or #frontend.certs == 0 then
    return ngx.exit(ngx.ERROR)
  end
  local m, err = material(state, frontend.certs[1])
  if not m then
    ngx.log(ngx.ERR, "agc: certificate: ", err)
    return ngx.exit(ngx.ERROR)
  end
  ssl.clear_certs()
  assert(ssl.set_cert(m.cert))
  assert(ssl.set_priv_key(m.key))
  if frontend.client_ca then
    local ca = state.cas[frontend.client_ca + 1]
    local chain = ssl.parse_pem_cert(ca)
    assert(ssl.verify_client(chain, 4))
  end
end

return _M
