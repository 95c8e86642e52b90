-- The listener a request reaches (agc.router's select_frontend): by port and
-- Host, with SNI and client certificates on TLS ports.
local t = require("t")
local config = require("agc.config")
local router = require("agc.router")

local state = assert(config.compile({
  frontends = {
    ["8080"] = {
      { name = "app", port = 80, hostname = "app.example" },
      { name = "wild", port = 80, hostname = "*.example" },
    },
    ["8443"] = {
      { name = "mtls", port = 443, hostname = "mtls.example", client_ca = 0 },
      { name = "fallback", port = 443, hostname = "fallback.example", client_ca = 0, insecure_fallback = true },
      { name = "any", port = 443 },
    },
  },
  cas = { "ca" },
}))

local function listener(port, host, vars)
  local frontend, status = router.select_frontend(state, port, host, vars or {})
  return frontend and frontend.name or status
end

local function tls(sni, verify)
  return { https = "on", ssl_server_name = sni, ssl_client_verify = verify or "NONE" }
end

local T = {}

function T.a_port_without_listeners_is_not_found()
  t.eq(listener(9999, "app.example"), 404)
end

function T.host_picks_the_listener_most_specific_first()
  t.eq(listener(8080, "app.example"), "app")
  t.eq(listener(8080, "other.example"), "wild")
  t.eq(listener(8080, "example.org"), 404)
end

function T.sni_naming_another_listener_is_misdirected()
  t.eq(listener(8443, "x.example", tls("mtls.example", "SUCCESS")), 421)
  t.eq(listener(8443, "mtls.example", tls("MTLS.example", "SUCCESS")), "mtls", "SNI compares lower-cased")
  t.eq(listener(8443, "x.example", tls(nil)), "any", "no SNI: Host decides")
  t.eq(listener(8443, "x.example", tls("unknown.example")), "any", "an SNI no listener names")
end

function T.frontend_mtls_closes_without_a_verified_client_certificate()
  t.eq(listener(8443, "mtls.example", tls("mtls.example", "NONE")), 444)
  t.eq(listener(8443, "mtls.example", tls("mtls.example", "FAILED:certificate has expired")), 444)
  t.eq(listener(8443, "mtls.example", tls("mtls.example", "SUCCESS")), "mtls")
end

function T.an_insecure_fallback_lets_any_client_through()
  t.eq(listener(8443, "fallback.example", tls("fallback.example", "NONE")), "fallback")
end

function T.plain_text_skips_the_tls_checks()
  -- only a TLS port's frontends have client_ca; plain text never reads SNI
  t.eq(listener(8443, "mtls.example", { https = "" }), "mtls")
end

return T
