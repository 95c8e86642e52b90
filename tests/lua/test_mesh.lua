-- The mesh certificate on the control socket (agc.mesh): checked before it is
-- kept, and kept as one value whose flags are its version, so a worker never
-- pairs one certificate with another's key.
local cjson = require("cjson.safe")
local t = require("t")
local mesh = require("agc.mesh")

local dict = ngx.shared.agc_config

-- a self-signed P-256 certificate and its key, for these tests only
local CERT = [[
-----BEGIN CERTIFICATE-----
MIIBhDCCASmgAwIBAgIUWCV+Hz05E44K28XDvtqvm1KV2EkwCgYIKoZIzj0EAwIw
FzEVMBMGA1UECgwMYWdjLWx1YS10ZXN0MB4XDTI2MTIwNTExMDQwNFoXDTM2MTIw
MjExMDQwNFowFzEVMBMGA1UECgwMYWdjLWx1YS10ZXN0MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAENsVDely5ljmbzm3NR72amAhUTPSzpnRVi+4U1aZS2kmruS5w
9P6uwFMK+FNid/xbxHw2DARfGOwjrPMvVFKWeqNTMFEwHQYDVR0OBBYEFO00TNmq
/wcdZZ66IsgofAEZZmYFMB8GA1UdIwQYMBaAFO00TNmq/wcdZZ66IsgofAEZZmYF
MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAJ5x4BtgLtUxEMV/
SeiwVwWadq3l22vIY3s26ve0kluxAiEA0zRyfVD2v1KxSYcQ9tT4YRRHAs3L2Eld
tXO5kcWaWC4=
-----END CERTIFICATE-----
]]
local KEY = [[
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg39caJzghrELniIAo
+3HT6dv8XmWee/ujPv5mAPhMkQahRANCAAQ2xUN6XLmWOZvObc1HvZqYCFRM9LOm
dFWL7hTVplLaSau5LnD0/q7AUwr4U2J3/FvEfDYMBF8Y7COs8y9UUpZ6
-----END PRIVATE KEY-----
]]

local T = {}

function T.a_certificate_and_key_are_kept_together_under_a_new_version()
  dict:delete("mesh")
  dict:delete("mesh_version")
  t.eq(mesh.store(cjson.encode({ chain = CERT, key = KEY })), 1)
  t.eq(mesh.store(cjson.encode({ chain = CERT .. "\n", key = KEY })), 2)
  local value, flags = dict:get("mesh")
  t.eq(flags, 2, "the value carries its version")
  t.eq(cjson.decode(value), { chain = CERT .. "\n", key = KEY })
end

function T.anything_but_a_certificate_and_its_key_is_refused_and_nothing_changes()
  dict:delete("mesh")
  dict:delete("mesh_version")
  local version, err = mesh.store("not json")
  t.eq(version, nil)
  t.truthy(err:find("chain and key", 1, true), err)
  version, err = mesh.store(cjson.encode({ chain = "-----BEGIN CERTIFICATE-----", key = KEY }))
  t.eq(version, nil)
  t.truthy(err:find("^chain: "), err)
  version, err = mesh.store(cjson.encode({ chain = CERT, key = CERT }))
  t.eq(version, nil)
  t.truthy(err:find("^key: "), err)
  t.eq(dict:get("mesh"), nil, "nothing kept")
  t.eq(dict:get("mesh_version"), nil)
end

return T
