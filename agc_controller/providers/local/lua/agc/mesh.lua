-- The gateway's Istio workload certificate, for backends reached over mesh mTLS.
--
-- The controller (or the data-plane agent) obtains the certificate from istiod
-- and renews it long before it expires (agc_controller/mesh); each renewal
-- arrives on the control socket (PUT /mesh, `store`) and lands in the shared
-- dict as one value, chain and key together, with its version as the value's
-- flags, so a reader never pairs one certificate with another's key. The
-- static config's @agc_mesh locations load it per connection from the
-- variables `forward` sets (`proxy_ssl_certificate data:$agc_mesh_cert`):
-- a renewal needs no reload, and a connection opened after it presents the
-- new certificate.
local cjson = require("cjson.safe")
local ssl = require("ngx.ssl")

local _M = {}

local dict = ngx.shared.agc_config
local KEY = "mesh"
local VERSION_KEY = "mesh_version"

-- this worker's copy of the stored certificate: (version, chain PEM, key PEM)
local version, chain, key

-- Store a certificate: a JSON body {chain, key} (PEM), checked before it is kept.
function _M.store(body)
  local doc = cjson.decode(body)
  if type(doc) ~= "table" or type(doc.chain) ~= "string" or type(doc.key) ~= "string" then
    return nil, "the body must be a JSON object with the PEM strings chain and key"
  end
  local _, err = ssl.parse_pem_cert(doc.chain)
  if err then return nil, "chain: " .. err end
  _, err = ssl.parse_pem_priv_key(doc.key)
  if err then return nil, "key: " .. err end
  local next_version = (dict:get(VERSION_KEY) or 0) + 1
  local ok
  ok, err = dict:safe_set(KEY, cjson.encode({ chain = doc.chain, key = doc.key }), 0, next_version)
  if not ok then return nil, "cannot keep the certificate: " .. err end
  dict:set(VERSION_KEY, next_version)
  return next_version
end

local function current()
  local stored = dict:get(VERSION_KEY)
  if stored and stored ~= version then
    local value, flags = dict:get(KEY)
    local doc = value and cjson.decode(value)
    if doc then version, chain, key = flags, doc.chain, doc.key end
  end
  return chain, key
end

-- Continue the request in the location for a mesh backend (`grpc`: HTTP/2),
-- with the certificate in the variables it reads; 503 while there is none yet.
function _M.forward(grpc)
  local cert_pem, key_pem = current()
  if not cert_pem then
    ngx.log(ngx.ERR, "a mesh backend was chosen, but the gateway has no mesh certificate yet")
    return ngx.exit(503)
  end
  ngx.var.agc_mesh_cert = cert_pem
  ngx.var.agc_mesh_key = key_pem
  return ngx.exec(grpc and "@agc_mesh_grpc" or "@agc_mesh")
end

return _M
