-- JWT bearer tokens (agc.jwt): every way a token can be wrong, and the three
-- signature algorithms, verified by OpenSSL.
local t = require("t")
local jwt = require("agc.jwt")
local f = require("jwt_fixtures")

local NOW = 1800000000 -- 2027

local function providers(audiences)
  local compiled, err = jwt.compile({
    {
      issuer = "https://issuer.test",
      audiences = audiences or { "api" },
      keys = { { "r1", "RS256", f.rsa_pem }, { ngx.null, "ES256", f.ec_pem },
               { ngx.null, "EdDSA", f.ed_pem } },
      claims_to_headers = { { "sub", "X-User" } },
    },
  })
  t.truthy(compiled, err)
  return compiled
end

local T = {}

function T.valid_tokens_of_each_algorithm_pass()
  local p = providers()
  for _, name in ipairs({ "rs256", "es256", "eddsa", "aud_list" }) do
    local claims, provider = jwt.check(p, f.tokens[name], NOW)
    t.truthy(claims, name .. ": " .. tostring(provider))
    t.eq(claims.sub, "alice")
  end
end

function T.every_wrong_token_is_refused_with_its_reason()
  local p = providers()
  local cases = {
    expired = "expired", future = "not yet valid", wrong_aud = "wrong audience",
    bad_sig = "bad signature", unknown_iss = "unknown issuer", wrong_kid = "bad signature",
    no_exp = "expired", alg_none = "alg not allowed", hs256 = "alg not allowed",
  }
  for name, reason in pairs(cases) do
    local claims, why = jwt.check(p, f.tokens[name], NOW)
    t.eq(claims, nil, name)
    t.eq(why, reason, name)
  end
  t.eq(select(2, jwt.check(p, "a.b", NOW)), "malformed")
  t.eq(select(2, jwt.check(p, "!!.!!.!!", NOW)), "malformed")
end

function T.a_remembered_token_still_expires()
  local p = providers()
  t.truthy(jwt.check(p, f.tokens.rs256, NOW), "checked and remembered")
  t.truthy(jwt.check(p, f.tokens.rs256, NOW + 10), "remembered")
  t.eq(select(2, jwt.check(p, f.tokens.rs256, 4102444800 + 61)), "expired",
    "never past its exp (and leeway)")
  -- another provider set (a rotated JWKS) checks afresh
  local other = jwt.compile({ { issuer = "https://issuer.test", keys = { { "x", "ES256", f.ec_pem } } } })
  t.eq(select(2, jwt.check(other, f.tokens.rs256, NOW)), "bad signature")
end

function T.without_audiences_aud_is_not_checked()
  t.truthy(jwt.check(providers({}), f.tokens.wrong_aud, NOW))
end

function T.a_key_that_is_not_pem_is_refused_when_compiling()
  local compiled, err = jwt.compile({ { issuer = "i", keys = { { ngx.null, "RS256", "x" } } } })
  t.eq(compiled, nil)
  t.eq(err, "jwt: a key of i is not a PEM public key")
  compiled, err = jwt.compile({ { issuer = "i", keys = { { ngx.null, "HS256", f.rsa_pem } } } })
  t.eq(err, "jwt: unsupported alg HS256")
end

return T
