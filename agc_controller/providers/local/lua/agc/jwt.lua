-- JWT bearer tokens (AuthPolicy jwt): parse, pick the issuer's key, verify the
-- signature with OpenSSL (through LuaJIT FFI: the libcrypto NGINX links), then
-- the claims. Nothing here is cryptography of our own: OpenSSL verifies, we only
-- cut the token into its parts and turn an ECDSA signature's r||s into the DER
-- form OpenSSL takes.
--
-- A token passes when: it has three base64url parts; its header's alg is one
-- of RS256/384/512, ES256/384 or EdDSA (never "none") and equals the key's; its
-- iss names a provider; a key of that provider (the token's kid, when it has
-- one) verifies the signature; exp (required) is not past and nbf not ahead,
-- with LEEWAY seconds either way; and its aud holds one of the provider's
-- audiences (when it lists any).
local ffi = require("ffi")
local cjson = require("cjson.safe")
local b64 = require("ngx.base64")
local lrucache = require("resty.lrucache")

ffi.cdef [[
typedef struct bio_st BIO;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct ECDSA_SIG_st ECDSA_SIG;
typedef struct bignum_st BIGNUM;
BIO *BIO_new_mem_buf(const void *buf, int len);
int BIO_free(BIO *a);
EVP_PKEY *PEM_read_bio_PUBKEY(BIO *bp, EVP_PKEY **x, void *cb, void *u);
void EVP_PKEY_free(EVP_PKEY *pkey);
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
const EVP_MD *EVP_get_digestbyname(const char *name);
int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, void **pctx, const EVP_MD *type, void *e,
                         EVP_PKEY *pkey);
int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sig, size_t siglen,
                     const unsigned char *tbs, size_t tbslen);
ECDSA_SIG *ECDSA_SIG_new(void);
void ECDSA_SIG_free(ECDSA_SIG *sig);
BIGNUM *BN_bin2bn(const unsigned char *s, int len, BIGNUM *ret);
int ECDSA_SIG_set0(ECDSA_SIG *sig, BIGNUM *r, BIGNUM *s);
int i2d_ECDSA_SIG(const ECDSA_SIG *sig, unsigned char **pp);
]]

local C = ffi.C
local LEEWAY = 60
-- tokens that passed, per compiled provider set (a JWKS change compiles a new
-- one, so a rotated-out key's tokens are checked afresh): per worker, at most
-- CACHE_SIZE, each until its exp or CACHE_TTL, whichever is first
local CACHE_SIZE = 4096
local CACHE_TTL = 300
local passed = setmetatable({}, { __mode = "k" })

local _M = {}

-- alg -> digest name (nil for EdDSA, which hashes itself) and ECDSA part size
local ALGS = {
  RS256 = { digest = "SHA256" }, RS384 = { digest = "SHA384" }, RS512 = { digest = "SHA512" },
  ES256 = { digest = "SHA256", half = 32 }, ES384 = { digest = "SHA384", half = 48 },
  EdDSA = {},
}

local function load_key(pem)
  local bio = C.BIO_new_mem_buf(pem, #pem)
  if bio == nil then return nil end
  local key = C.PEM_read_bio_PUBKEY(bio, nil, nil, nil)
  C.BIO_free(bio)
  if key == nil then return nil end
  return ffi.gc(key, C.EVP_PKEY_free)
end

-- The providers of a policy, compiled: keys loaded once per worker.
function _M.compile(providers)
  if providers == nil or #providers == 0 then return nil end
  local by_issuer = {}
  for _, p in ipairs(providers) do
    local keys = {}
    for i, k in ipairs(p.keys or {}) do
      local kid, alg, pem = k[1], k[2], k[3]
      if not ALGS[alg] then return nil, "jwt: unsupported alg " .. tostring(alg) end
      local key = load_key(pem)
      if not key then return nil, "jwt: a key of " .. p.issuer .. " is not a PEM public key" end
      -- "" (or null) when the JWK had no kid
      keys[i] = { kid = (kid ~= cjson.null and kid ~= "") and kid or nil, alg = alg, key = key }
    end
    local audiences = {}
    for _, a in ipairs(p.audiences or {}) do audiences[a] = true end
    by_issuer[p.issuer] = { keys = keys, audiences = next(audiences) and audiences or nil,
                            claims = p.claims_to_headers or {} }
  end
  return by_issuer
end

-- r||s (each `half` bytes) as the DER ECDSA-Sig-Value OpenSSL verifies.
local function ecdsa_der(raw, half)
  if #raw ~= 2 * half then return nil end
  local sig = C.ECDSA_SIG_new()
  if sig == nil then return nil end
  local r = C.BN_bin2bn(raw, half, nil)
  local s = C.BN_bin2bn(raw:sub(half + 1), half, nil)
  if r == nil or s == nil or C.ECDSA_SIG_set0(sig, r, s) ~= 1 then
    C.ECDSA_SIG_free(sig)
    return nil
  end
  local len = C.i2d_ECDSA_SIG(sig, nil)
  local buf = ffi.new("unsigned char[?]", len)
  local out = ffi.new("unsigned char *[1]", buf)
  C.i2d_ECDSA_SIG(sig, out)
  C.ECDSA_SIG_free(sig)
  return ffi.string(buf, len)
end

-- Whether `signature` over `input` verifies with `key` under `alg`.
function _M.verify(alg, key, input, signature)
  local spec = ALGS[alg]
  if spec.half then
    signature = ecdsa_der(signature, spec.half)
    if not signature then return false end
  end
  local md = spec.digest and C.EVP_get_digestbyname(spec.digest) or nil
  local ctx = C.EVP_MD_CTX_new()
  if ctx == nil then return false end
  local ok = C.EVP_DigestVerifyInit(ctx, nil, md, nil, key) == 1
    and C.EVP_DigestVerify(ctx, signature, #signature, input, #input) == 1
  C.EVP_MD_CTX_free(ctx)
  return ok
end

local function decode_json(part)
  local text = part and b64.decode_base64url(part)
  local value = text and cjson.decode(text)
  if type(value) ~= "table" then return nil end
  return value
end

local function audience_ok(wanted, aud)
  if not wanted then return true end
  if type(aud) == "string" then return wanted[aud] == true end
  if type(aud) == "table" then
    for _, a in ipairs(aud) do
      if wanted[a] then return true end
    end
  end
  return false
end

-- Check `token` against the compiled providers at time `now`: the claims and
-- the provider, or nil and why not (for the log, never for the client). A token
-- that passed is remembered (its signature is not verified again), never past
-- its exp.
function _M.check(providers, token, now)
  local cache = passed[providers]
  if not cache then
    cache = lrucache.new(CACHE_SIZE)
    passed[providers] = cache
  end
  local hit = cache:get(token)
  if hit and now <= hit[1].exp + LEEWAY then return hit[1], hit[2] end
  local claims, provider = _M.check_afresh(providers, token, now)
  if claims then
    cache:set(token, { claims, provider }, math.min(CACHE_TTL, claims.exp + LEEWAY - now))
  end
  return claims, provider
end

function _M.check_afresh(providers, token, now)
  local h, p, s = token:match("^([%w_-]+)%.([%w_-]+)%.([%w_-]*)$")
  if not h then return nil, "malformed" end
  local header, claims = decode_json(h), decode_json(p)
  local signature = b64.decode_base64url(s)
  if not (header and claims and signature) then return nil, "malformed" end
  local alg = header.alg
  if type(alg) ~= "string" or not ALGS[alg] then return nil, "alg not allowed" end
  local provider = type(claims.iss) == "string" and providers[claims.iss]
  if not provider then return nil, "unknown issuer" end
  local input = h .. "." .. p
  local verified = false
  for _, k in ipairs(provider.keys) do
    if k.alg == alg and (header.kid == nil or header.kid == k.kid)
      and _M.verify(alg, k.key, input, signature) then
      verified = true
      break
    end
  end
  if not verified then return nil, "bad signature" end
  if type(claims.exp) ~= "number" or now > claims.exp + LEEWAY then return nil, "expired" end
  if claims.nbf ~= nil and (type(claims.nbf) ~= "number" or now + LEEWAY < claims.nbf) then
    return nil, "not yet valid"
  end
  if not audience_ok(provider.audiences, claims.aud) then return nil, "wrong audience" end
  return claims, provider
end

return _M
