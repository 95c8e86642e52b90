-- AuthPolicy on the data plane (agc.auth): addresses, CIDRs, digests and hashes.
local t = require("t")
local auth = require("agc.auth")

local function bytes(text) return auth.address_bytes(text) end

local T = {}

function T.addresses_parse_to_bytes()
  t.eq(#bytes("10.1.2.3"), 4)
  t.eq(#bytes("2001:db8::1"), 16)
  t.eq(bytes("10.1.2"), nil)
  t.eq(bytes("not an address"), nil)
end

function T.cidrs_match_by_prefix()
  local c = auth.compile({ deny = { "10.0.0.0/8", "192.168.1.128/25", "2001:db8::/32" },
    allow = {}, trusted_proxies = {} })
  t.truthy(auth.in_nets(bytes("10.200.1.1"), c.deny))
  t.truthy(auth.in_nets(bytes("192.168.1.200"), c.deny))
  t.falsy(auth.in_nets(bytes("192.168.1.100"), c.deny), "outside the /25")
  t.truthy(auth.in_nets(bytes("2001:db8:ffff::1"), c.deny))
  t.falsy(auth.in_nets(bytes("2001:db9::1"), c.deny))
  t.falsy(auth.in_nets(bytes("11.0.0.1"), c.deny))
  t.eq(c.allow, nil, "an empty allow list allows everything")
  local bad, err = auth.compile({ deny = { "10.0.0.0/33" } })
  t.eq(bad, nil)
  t.eq(err, "auth: invalid CIDR 10.0.0.0/33")
end

function T.the_client_behind_trusted_proxies_is_the_rightmost_untrusted_entry()
  local trusted = auth.compile({ deny = { "1.1.1.1/32" }, trusted_proxies = { "10.0.0.0/8" } })
    .trusted_proxies
  local peer = bytes("10.0.0.5")
  t.eq(auth.client_address(peer, "203.0.113.9, 198.51.100.7, 10.0.0.9", trusted),
    bytes("198.51.100.7"))
  t.eq(auth.client_address(peer, nil, trusted), peer, "no header: the peer")
  t.eq(auth.client_address(bytes("198.51.100.1"), "10.0.0.1", trusted), bytes("198.51.100.1"),
    "an untrusted peer's header is ignored")
  t.eq(auth.client_address(peer, "garbage, 10.0.0.9", trusted), bytes("10.0.0.9"),
    "a malformed entry ends the walk")
end

function T.digests_match_what_the_controller_computes()
  -- hashlib.sha256(b"").hexdigest(), and of b"abc"
  t.eq(auth.sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
  t.eq(auth.sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
end

function T.htpasswd_hashes_verify()
  local bcrypt = "$2b$05$bRD449e8iX8VgrG/O1NhwOMiWa8r8qD5yxnGGh04vUUGXWd2EaZJe"
  local sha512 = "$6$TwfWjxlpnIasMNDz$PoTE37O.CSrvYyZh4tUufpxotQGRWv/h/zlTjakN6e.PJlesEhur8BkXLKrqYZjpyrbxPwbxfPZZ8GMtn7zc50"
  local sha1 = "{SHA}/vNB+F2HQ559kaLUZbmHHvZrXpg="
  for _, hashed in ipairs({ bcrypt, sha512, sha1 }) do
    t.truthy(auth.password_matches(hashed, "s3cret"), hashed)
    t.falsy(auth.password_matches(hashed, "s3cre"), hashed)
  end
  t.falsy(auth.password_matches("$apr1$xyz$abc", "s3cret"), "unknown schemes never match")
end

function T.the_realm_is_quoted_data()
  local c = auth.compile({ realm = "Staff only", deny = {} })
  t.eq(c.challenge, 'Basic realm="Staff only", charset="UTF-8"')
  local bad, err = auth.compile({ realm = 'a" b' })
  t.eq(bad, nil)
  t.eq(err, "auth: invalid realm")
end

return T
