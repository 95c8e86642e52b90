"""The static NGINX configuration of one Gateway's data plane (pure).

Static means: what NGINX reads only at start or reload — the Lua setup, the
control socket, listening sockets, and upstream TLS settings. Nothing a user
wrote reaches this text except values re-validated here (an IP address, port
numbers, a hostname for upstream SNI); everything else is dynamic state (see
dynamic.py). `nginx_string` refuses any value outside a conservative
character set rather than trying to escape it.

Pure: the text depends on the arguments alone. What differs between hosts
(module and library paths, the multiarch triplet, the socket directory) comes
in the `InstanceLayout`, which the caller builds (environment.py reads them).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from pathlib import Path
from typing import Literal

import attrs

from agc_controller.core.errors import PermanentError
from agc_controller.providers.local import waf
from agc_controller.providers.local.dynamic import (
    RETRY_CODE_SETS,
    StaticNeeds,
    StreamListen,
    error_pages_location,
    retry_location,
)
from agc_controller.providers.local.state import stream_port
from agc_controller.providers.local.waf import rule_set_id
from agc_controller.translate.hostnames import is_valid_hostname
from agc_controller.translate.model import BackendTLS

# sun_path is 108 bytes, NUL included
MAX_SOCKET_PATH = 107
_SAFE = re.compile(r"^[A-Za-z0-9._/:\-]+$")


# the router's Lua modules (providers/local/lua/agc/*.lua), each preloaded by init_by_lua
LUA_MODULES = tuple(
    sorted(f"agc.{path.stem}" for path in (Path(__file__).parent / "lua" / "agc").glob("*.lua"))
)


SocketKind = Literal["http", "h2c", "https", "tls"]

# Debian's libnginx-mod-http-modsecurity (ModSecurity v3), loaded only by a data
# plane with a firewall rule set
MODSECURITY_MODULE = "ngx_http_modsecurity_module.so"


class UnsafeValue(PermanentError, ValueError):
    """A value that must not be written into NGINX configuration."""


def nginx_string(value: str) -> str:
    """`value` as an NGINX token, if it is made only of safe characters."""
    if not _SAFE.match(value):
        raise UnsafeValue(f"refusing to write {value[:64]!r} into NGINX configuration")
    return value


@attrs.frozen(kw_only=True)
class HostPaths:
    """Where this host keeps what the configuration makes NGINX load. Found by
    the caller (environment.py), so rendering reads no environment and the same
    input renders the same text anywhere (the golden tests rely on it)."""

    # NGINX's dynamic modules (Debian: /usr/lib/nginx/modules)
    modules_dir: Path
    # the router's Lua modules (`agc.*` lives in lua_dir/agc) and the njs sniffer
    lua_dir: Path
    njs_dir: Path
    # Debian's multiarch triplet (x86_64-linux-gnu, aarch64-linux-gnu, ...): the
    # Lua C modules (cjson) are in /usr/lib/<triplet>/lua/5.1
    multiarch: str


@attrs.frozen(kw_only=True)
class InstanceLayout:
    """Where one Gateway's data plane keeps its files, and where it finds what
    this host provides."""

    prefix: Path
    # where data planes keep their unix sockets (environment.socket_root): a
    # short path, since a socket's must fit in MAX_SOCKET_PATH bytes
    socket_root: Path
    host: HostPaths

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def socket_dir(self) -> Path:
        """The instance's sockets, named after its prefix (the same for every
        controller on that state directory, so a new one finds a running NGINX)."""
        return self.socket_root / hashlib.sha256(str(self.prefix).encode()).hexdigest()[:16]

    @property
    def control_socket(self) -> Path:
        return self.socket_dir / "control.sock"

    def port_socket(self, kind: SocketKind, port: int) -> Path:
        """Where a server behind port `port`'s stream server listens: the HTTP/1.x
        (`http`) and h2c servers behind a protocol sniffer; the HTTPS server and
        the TLS passthrough server (`tls`) behind a port both share (certs.lua
        reads the port from the `https` socket's name)."""
        return self.socket_dir / f"{kind}-{port}.sock"

    def terminate_socket(self, port: int, number: int) -> Path:
        """Where the server terminating TLS for the `number`th listener in mode
        Terminate on port `port` listens (streams.js builds the same name)."""
        return self.socket_dir / f"tls-{port}-{number}.sock"

    @property
    def streams_dir(self) -> Path:
        """The streams' state, one file per stream (streams.py, njs/streams.js)."""
        return self.prefix / "streams"

    @property
    def tls_dir(self) -> Path:
        return self.prefix / "tls"

    def pem_file(self, pem: str, kind: str) -> Path:
        """Where NGINX reads `pem` from: named after its content, so a file is
        never rewritten while a running or loading configuration reads it."""
        return self.tls_dir / f"{kind}-{hashlib.sha256(pem.encode()).hexdigest()[:16]}.pem"

    @property
    def waf_dir(self) -> Path:
        """The firewall's rule sets, one file each, named by rule set id (waf.py)."""
        return self.prefix / "waf"

    def waf_rules(self, rule_set: str) -> Path:
        return self.waf_dir / f"{rule_set}.conf"

    @property
    def access_log(self) -> Path:
        """One JSON line per request (StaticSettings.access_log "file")."""
        return self.prefix / "access.log"

    @property
    def waf_audit_log(self) -> Path:
        """What the firewall matched, one JSON document per request (ModSecurity's
        audit log): the workers write it."""
        return self.prefix / "waf.log"

    @property
    def fallback_cert(self) -> tuple[Path, Path]:
        return self.tls_dir / "fallback.crt", self.tls_dir / "fallback.key"


AccessLog = Literal["file", "stdout", "off"]
ACCESS_LOGS: tuple[AccessLog, ...] = ("file", "stdout", "off")


@attrs.frozen
class StaticSettings:
    workers: int = 2
    worker_connections: int = 16384
    # idle keep-alive connections per worker to upstreams; 1,024 measured to double
    # throughput over 64 at 1,000 client connections (shared/FACTS.md)
    upstream_keepalive: int = 1024
    # the shared dict holding the routing state (routes, endpoints, certificates)
    state_size_mb: int = 64
    # the shared dict holding rate-limit buckets (lua/agc/ratelimit.lua): ~100 bytes
    # a key, so 16 MiB tracks ~150,000 clients within their burst window
    rate_limit_size_mb: int = 16
    # the shared dict of request counters (lua/agc/metrics.lua): ~16 keys of ~100
    # bytes a route (status classes, backends, histogram buckets), so 16 MiB holds
    # ~10,000 routes' counters; beyond that the least recently used keys go
    metrics_size_mb: int = 16
    system_ca_bundle: str = "/etc/ssl/certs/ca-certificates.crt"
    # one JSON line per request (_ACCESS_LOG_FORMAT): "file" (<prefix>/access.log),
    # "stdout" (a data-plane pod's: the container log), or "off"
    access_log: AccessLog = "file"


_STATIC_ID = "__agc_static_id__"
_BEHIND_STREAM = "proxy_protocol backlog=4096"


def render(
    address: str, needs: StaticNeeds, layout: InstanceLayout, settings: StaticSettings
) -> tuple[str, str]:
    """(the configuration, its id).

    The id is a digest of the text, which names the files NGINX reads by their
    content (`tls_files`), so new upstream CAs or client certificates change it
    and NGINX reloads to read them. The id also goes into the state pushed with
    it: a worker still running an older configuration during a reload must not
    follow state that names locations only the new one has (config.lua checks).
    """
    text = _render(address, needs, layout, settings)
    static_id = hashlib.sha256(text.encode()).hexdigest()[:16]
    return text.replace(_STATIC_ID, static_id), static_id


def static_files(needs: StaticNeeds, layout: InstanceLayout) -> dict[Path, tuple[str, int]]:
    """The files the static configuration makes NGINX read: path -> (content, mode).
    Each is named after its content (a digest, or a rule set's id)."""
    files: dict[Path, tuple[str, int]] = {
        layout.waf_rules(rule_set_id(rules)): (waf.render(rules, layout.waf_audit_log), 0o644)
        for rules in needs.waf
    }
    for tls in needs.backend_tls:
        if tls.ca_pem is not None:
            files[layout.pem_file(tls.ca_pem, "ca")] = (tls.ca_pem, 0o644)
        if tls.client_certificate is not None:
            cert, key = tls.client_certificate.cert_pem, tls.client_certificate.key_pem
            files[layout.pem_file(cert, "client-cert")] = (cert, 0o644)
            files[layout.pem_file(key, "client-key")] = (key, 0o600)
    for stream in needs.streams:
        for certificate in stream.terminations:
            files[layout.pem_file(certificate.cert_pem, "cert")] = (certificate.cert_pem, 0o644)
            files[layout.pem_file(certificate.key_pem, "key")] = (certificate.key_pem, 0o600)
    return files


# One JSON line per request. The path is logged without its query (which may
# carry an API key, see AuthPolicy), values are JSON-escaped, so a header or path
# can never break a line. request_id is the client's X-Request-ID or NGINX's own;
# traceparent the client's when it is valid W3C Trace Context, else one started
# here from the request id (flags 00: not sampled, as no span is recorded);
# both are passed to the backend (_CORRELATION_HEADERS).
_ACCESS_LOG_FORMAT = (
    '{"time":"$time_iso8601","request_id":"$agc_request_id","traceparent":"$agc_traceparent",'
    '"client":"$remote_addr","method":"$request_method","host":"$host","path":"$agc_log_path",'
    '"protocol":"$server_protocol","status":$status,"bytes_sent":$bytes_sent,'
    '"duration":$request_time,"route":"$agc_route","upstream":"$upstream_addr",'
    '"upstream_status":"$upstream_status","upstream_duration":"$upstream_response_time",'
    '"user_agent":"$http_user_agent"}'
)
_CORRELATION_HEADERS = (("X-Request-ID", "$agc_request_id"), ("traceparent", "$agc_traceparent"))


def _access_log(layout: InstanceLayout, settings: StaticSettings) -> list[str]:
    # the correlation variables (maps are evaluated only when a variable is read)
    out = [
        '  map $http_x_request_id $agc_request_id { "" $request_id; default $http_x_request_id; }',
        '  map $request_id $agc_span_id { "~^(?<agc_span>[0-9a-f]{16})" $agc_span; }',
        "  map $http_traceparent $agc_traceparent {",
        '    "~^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$" $http_traceparent;',
        "    default 00-$request_id-$agc_span_id-00;",
        "  }",
    ]
    if settings.access_log == "off":
        return [*out, "  access_log off;"]
    # a file: unlike the sockets' paths, no length limit
    target = str(layout.access_log) if settings.access_log == "file" else "/dev/stdout"
    return [
        *out,
        '  map $request_uri $agc_log_path { "~^(?<agc_path>[^?]*)" $agc_path; }',
        f"  log_format agc_json escape=json '{_ACCESS_LOG_FORMAT}';",
        f"  access_log {nginx_string(target)} agc_json buffer=64k flush=1s;",
    ]


def _render(
    address: str, needs: StaticNeeds, layout: InstanceLayout, settings: StaticSettings
) -> str:
    ip = ipaddress.ip_address(address)
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    prefix = nginx_string(str(layout.prefix))
    paths = layout.host
    lua = nginx_string(str(paths.lua_dir))
    modules = nginx_string(str(paths.modules_dir))
    lua_c = nginx_string(f"/usr/lib/{paths.multiarch}/lua/5.1")
    fallback_cert, fallback_key = (nginx_string(str(p)) for p in layout.fallback_cert)
    out = [
        "# Generated by agc-controller for one Gateway. Do not edit.",
        "master_process on;",
        # the maps' regexes run on every request (the access log's path, the trace
        # context): compiled to machine code, the gateway did ~5 % more requests a
        # second (docs/benchmarks.md)
        "pcre_jit on;",
        f"worker_processes {int(settings.workers)};",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/error.log warn;",
        f"load_module {modules}/ndk_http_module.so;",
        f"load_module {modules}/ngx_http_lua_module.so;",
        *(
            f"load_module {modules}/{module};"
            for module in ("ngx_stream_module.so", "ngx_stream_js_module.so")
            if needs.streams or any(listen.h2c for listen in needs.listens)
        ),
        *([f"load_module {modules}/{MODSECURITY_MODULE};"] if needs.waf else []),
        f"events {{ worker_connections {int(settings.worker_connections)}; }}",
        *_stream_block(host, needs, layout),
        "http {",
        *_access_log(layout, settings),
        f"  client_body_temp_path {prefix}/tmp/body;",
        f"  proxy_temp_path {prefix}/tmp/proxy;",
        f"  fastcgi_temp_path {prefix}/tmp/fastcgi;",
        f"  uwsgi_temp_path {prefix}/tmp/uwsgi;",
        f"  scgi_temp_path {prefix}/tmp/scgi;",
        f'  lua_package_path "{lua}/?.lua;/usr/share/lua/5.1/?.lua;;";',
        f'  lua_package_cpath "{lua_c}/?.so;;";',
        f"  lua_shared_dict agc_config {int(settings.state_size_mb)}m;",
        f"  lua_shared_dict agc_ratelimit {int(settings.rate_limit_size_mb)}m;",
        # endpoints out of the rotation (lua/agc/health.lua): one small key each
        "  lua_shared_dict agc_health 4m;",
        # requests in flight and endpoint arrivals (lua/agc/strategies.lua)
        "  lua_shared_dict agc_inflight 8m;",
        # request counters (lua/agc/metrics.lua): ~100 bytes a key, ~16 keys a route
        f"  lua_shared_dict agc_metrics {int(settings.metrics_size_mb)}m;",
        # every module loaded in the master, before the workers fork: the workers
        # (user nobody) never read the files, which may sit where only root can
        # (a checkout under /root), and share the loaded code
        "  init_by_lua_block {",
        f'    require("agc.config").set_static_id("{_STATIC_ID}")',
        f'    require("agc.health").set_control_socket("unix:{_path(layout.control_socket)}")',
        *(
            f'    require("{module}")'
            for module in LUA_MODULES
            if module not in ("agc.config", "agc.health")
        ),
        "  }",
        # worker 0 probes the endpoints HealthCheckPolicies ask about (lua/agc/prober.lua);
        # every worker adds its request counts to the shared dict (lua/agc/metrics.lua)
        "  init_worker_by_lua_block {",
        '    require("agc.prober").start()',
        '    require("agc.metrics").start()',
        "  }",
        "  server_tokens off;",
        # $agc_ctx is set in `location /` only; a request refused before it (a bad
        # request line) still runs the log phase, which reads it
        "  uninitialized_variable_warn off;",
        "  client_max_body_size 0;",
        "  proxy_buffering off;",
        "  proxy_request_buffering off;",
        "  proxy_http_version 1.1;",
        # set once here and never in a location: a location-level proxy_set_header
        # would drop every inherited one, Connection "" included (keep-alive off)
        "  map $http_upgrade $agc_connection { default upgrade; '' ''; }",
        "  proxy_set_header Connection $agc_connection;",
        "  proxy_set_header Upgrade $http_upgrade;",
        "  proxy_set_header Host $agc_upstream_host;",
        "  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "  proxy_set_header X-Forwarded-Proto $scheme;",
        "  proxy_set_header X-Forwarded-Host $host;",
        *(f"  proxy_set_header {name} {value};" for name, value in _CORRELATION_HEADERS),
        *(f"  grpc_set_header {name} {value};" for name, value in _CORRELATION_HEADERS),
        "  grpc_set_header Host $agc_upstream_host;",
        "  grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "  grpc_set_header X-Forwarded-Proto $scheme;",
        "  grpc_set_header X-Forwarded-Host $host;",
        "  proxy_connect_timeout 10s;",
        "  proxy_read_timeout 3600s;",
        "  proxy_send_timeout 3600s;",
        "  grpc_read_timeout 3600s;",
        "  grpc_send_timeout 3600s;",
        # a request gets one try unless its rule has a retry policy: then the router
        # jumps to that policy's location and the balancer grants the extra tries
        "  proxy_next_upstream error timeout;",
        "  proxy_next_upstream_tries 0;",
        "  grpc_next_upstream off;",
        # One keep-alive pool per upstream TLS setting (and one for plain HTTP):
        # NGINX keys a pool by peer address only, so a connection verified for one
        # BackendTLSPolicy must never serve a request that requires another.
        *[
            line
            for name in (
                "agc_backend",
                *(f"agc_backend_tls_{i}" for i in range(len(needs.backend_tls))),
                *(["agc_backend_mesh"] if needs.mesh else []),
            )
            for line in (
                f"  upstream {name} {{",
                "    server 0.0.0.1;",
                '    balancer_by_lua_block { require("agc.balancer").run() }',
                f"    keepalive {int(settings.upstream_keepalive)};",
                "    keepalive_timeout 60s;",
                "  }",
            )
        ],
        "  server {",
        f"    listen unix:{_path(layout.control_socket)};",
        # the controller's and the agent's own requests: not traffic
        "    access_log off;",
        "    client_body_buffer_size 64m;",
        # declares the variables proxy_set_header and the access log read above for a
        # Gateway with no HTTP listener (only TLS passthrough, TCP or UDP), whose
        # servers set none
        '    set $agc_upstream_host "";',
        '    set $agc_route "";',
        '    location = /config { content_by_lua_block { require("agc.control").handle() } }',
        # which static configuration the answering worker runs (reload confirmation)
        '    location = /static { content_by_lua_block { require("agc.control").static() } }',
        # drain mode ahead of a reload (nginx.py)
        '    location = /drain { content_by_lua_block { require("agc.control").drain() } }',
        # request counters for the agent's or the controller's /metrics (metrics.py)
        '    location = /metrics { content_by_lua_block { require("agc.control").metrics() } }',
        # the gateway's mesh workload certificate, at every renewal (lua/agc/mesh.lua)
        '    location = /mesh { content_by_lua_block { require("agc.control").mesh() } }',
        # gRPC health probes (lua/agc/health.lua): the prober's HTTP/1.1 request, sent
        # on as grpc.health.v1.Health/Check over HTTP/2 to the endpoint it names
        "    location = /grpc-health {",
        "      rewrite ^ /grpc.health.v1.Health/Check break;",
        "      grpc_pass grpc://$http_x_agc_target;",
        "      grpc_set_header Host $http_x_agc_target;",
        "      grpc_set_header TE trailers;",
        "    }",
        "  }",
    ]
    for listen in needs.listens:
        port = int(listen.port)
        if not 0 < port < 65536:
            raise UnsafeValue(f"port {port} is out of range")
        out.append("  server {")
        if listen.h2c or listen.behind_tls:
            # behind a stream server (see _stream_block), which passes the client's
            # address and the port it connected to in a PROXY protocol header;
            # every client connection becomes one to these sockets: a burst of new
            # ones must not overflow the default backlog (511)
            if listen.h2c:
                out += [
                    f"    listen unix:{_socket(layout, 'http', port)} {_BEHIND_STREAM};",
                    f"    listen unix:{_socket(layout, 'h2c', port)} http2 {_BEHIND_STREAM};",
                ]
            else:
                out.append(
                    f"    listen unix:{_socket(layout, 'https', port)} ssl http2 {_BEHIND_STREAM};"
                )
            out += ["    set_real_ip_from unix:;", "    real_ip_header proxy_protocol;"]
        else:
            ssl = " ssl http2" if listen.https else ""
            out.append(f"    listen {host}:{port}{ssl} reuseport;")
        if listen.https:
            out += [
                f"    ssl_certificate {fallback_cert};",
                f"    ssl_certificate_key {fallback_key};",
                '    ssl_certificate_by_lua_block { require("agc.certs").select() }',
                "    ssl_protocols TLSv1.2 TLSv1.3;",
            ]
        out += [
            '    header_filter_by_lua_block { require("agc.router").header_filter() }',
            '    log_by_lua_block { require("agc.router").log() }',
            "    location / {",
            # here, not at server level: server-level `set` runs again in every
            # subrequest, and mirror subrequests share (and would reset) these
            "      set $agc_upstream_host $http_host;",
            '      set $agc_ctx "";',
            # the matched route's namespace/name, for the access log (router.lua)
            '      set $agc_route "";',
            *[f'      set $agc_mirror{i} "";' for i in range(4)],
            # the mesh certificate for @agc_mesh (lua/agc/mesh.lua sets them)
            *(
                ['      set $agc_mesh_cert "";', '      set $agc_mesh_key "";']
                if needs.mesh
                else []
            ),
            '      access_by_lua_block { require("agc.router").route() }',
            "      proxy_pass http://agc_backend;",
            "    }",
            # the same routing for requests while keep-alive connections are drained
            # ahead of a reload: the response closes the connection
            "    location @agc_drain {",
            "      keepalive_timeout 0;",
            '      access_by_lua_block { require("agc.router").route(true) }',
            "      proxy_pass http://agc_backend;",
            "    }",
            # only rules with mirrors come here: each mirror directive costs a
            # subrequest per request, so the main location has none
            "    location @agc_mirrored {",
            *[f"      mirror /_agc_mirror/{i};" for i in range(4)],
            "      mirror_request_body on;",
            "      proxy_pass http://agc_backend;",
            "    }",
            # external authorization checks (lua/agc/auth.lua): a GET of the path after
            # the prefix, with the request's headers and no body; proxy_set_header
            # here replaces the inherited ones, so the needed ones are set again
            "    location ^~ /_agc_auth/ {",
            "      internal;",
            "      rewrite ^/_agc_auth(/.*)$ $1 break;",
            "      proxy_pass_request_body off;",
            '      proxy_set_header Content-Length "";',
            '      proxy_set_header Connection "";',
            "      proxy_set_header Host $agc_upstream_host;",
            "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "      proxy_set_header X-Forwarded-Proto $scheme;",
            "      proxy_pass http://agc_backend;",
            "    }",
            *[
                line
                for i in range(4)
                for line in (
                    f"    location = /_agc_mirror/{i} {{",
                    "      internal;",
                    # rewrite, not access: NGINX skips the access phase in subrequests
                    f'      rewrite_by_lua_block {{ require("agc.router").mirror({i}) }}',
                    "      proxy_pass http://agc_backend$request_uri;",
                    "    }",
                )
            ],
            "    location @agc_grpc {",
            "      grpc_pass grpc://agc_backend;",
            "    }",
            *_waf_locations(needs, layout),
        ]
        for index, tls in enumerate(needs.backend_tls):
            out += _backend_tls_location(index, tls, layout, settings)
        if needs.mesh:
            out += _MESH_LOCATIONS
        out += _error_pages_locations(needs, layout, settings)
        # Retry policies. Connection failures NGINX retries at once (the balancer
        # grants the tries). An answer with one of the policy's codes comes back
        # into the same location (error_page), where the router counts it, waits
        # the backoff and lets the request try again; the last try goes to
        # @agc_last_try, which does not intercept, so the client gets the
        # backend's own answer if that fails too.
        for codes in RETRY_CODE_SETS:
            location = retry_location(codes)
            out += [
                f"    location {location} {{",
                '      access_by_lua_block { require("agc.router").retry() }',
            ]
            if codes:
                out += [
                    "      proxy_intercept_errors on;",
                    "      recursive_error_pages on;",
                    f"      error_page {' '.join(str(int(code)) for code in codes)} = {location};",
                ]
            out += ["      proxy_pass http://agc_backend;", "    }"]
        out += [
            "    location @agc_last_try {",
            "      proxy_pass http://agc_backend;",
            "    }",
            "    location @agc_retries_spent {",
            '      content_by_lua_block { require("agc.router").retries_spent() }',
            "    }",
        ]
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def _waf_locations(needs: StaticNeeds, layout: InstanceLayout) -> list[str]:
    """One inspection location per firewall rule set (lua/agc/waf.lua): ModSecurity
    inspects the subrequest, which answers 204 unless it blocks. Its log phase runs
    (log_subrequest) so that ModSecurity writes what matched to its audit log; the
    transaction id names the policy and the request."""
    out = []
    # in id order: the text follows the set of rule sets, not how it was listed
    for rule_set, rules in sorted(((rule_set_id(r), r) for r in needs.waf), key=lambda p: p[0]):
        policy = nginx_string(rules.policy)
        out += [
            f"    location = /_agc_waf/{rule_set} {{",
            "      internal;",
            "      log_subrequest on;",
            # the request it inspects is logged, not this subrequest
            "      access_log off;",
            "      modsecurity on;",
            f"      modsecurity_rules_file {nginx_string(str(layout.waf_rules(rule_set)))};",
            f"      modsecurity_transaction_id {policy}/$request_id;",
            "      content_by_lua_block { ngx.exit(204) }",
            "    }",
        ]
    return out


def _socket(layout: InstanceLayout, kind: SocketKind, port: int) -> str:
    return _path(layout.port_socket(kind, port))


def _path(socket: Path) -> str:
    path = nginx_string(str(socket))
    if len(path) > MAX_SOCKET_PATH:
        raise UnsafeValue(f"socket path {path!r} is too long; set a shorter AGC_SOCKET_DIR")
    return path


def _stream_block(host: str, needs: StaticNeeds, layout: InstanceLayout) -> list[str]:
    """The stream servers: protocol sniffers, TLS passthrough, TCP and UDP."""
    sniffed = [int(listen.port) for listen in needs.listens if listen.h2c]
    if not sniffed and not needs.streams:
        return []
    njs = layout.host.njs_dir
    out = ["stream {"]
    if sniffed:
        out += [
            f"  js_import agc from {nginx_string(str(njs / 'sniff.js'))};",
            "  js_var $agc_h2c 0;",
        ]
    https = {int(listen.port) for listen in needs.listens if listen.behind_tls}
    if needs.streams:
        out += [
            f"  js_import agc_streams from {nginx_string(str(njs / 'streams.js'))};",
            f"  js_var $agc_streams_dir {nginx_string(str(layout.streams_dir))};",
            # a socket nothing listens on: a connection sent there is closed at once
            f"  js_var $agc_nowhere unix:{_path(layout.socket_dir / 'nowhere.sock')};",
            "  js_set $agc_stream_target agc_streams.target;",
        ]
    if any(_has_front(s, shares_https=s.port in https) for s in needs.streams):
        out.append("  js_set $agc_stream_front agc_streams.front;")
    for port in sniffed:
        out += _sniffer(host, port, layout)
    for stream in needs.streams:
        out += _stream_servers(host, stream, layout, shares_https=stream.port in https)
    out.append("}")
    return out


def _sniffer(host: str, port: int, layout: InstanceLayout) -> list[str]:
    """A plain-text port that takes both HTTP/1.x and h2c (gRPC without TLS).

    NGINX 1.22 cannot serve both on one port, so a stream server owns the port,
    reads the first bytes (njs: the HTTP/2 client preface or not) and hands the
    connection to one of two HTTP listeners on unix sockets. The extra hop costs
    throughput (docs/benchmarks.md), so only ports with gRPC rules have it.
    """
    return [
        f"  map $agc_h2c $agc_socket_{port} {{",
        f"    1 unix:{_socket(layout, 'h2c', port)};",
        f"    default unix:{_socket(layout, 'http', port)};",
        "  }",
        "  server {",
        f"    listen {host}:{port} reuseport;",
        "    js_preread agc.sniff;",
        f"    proxy_pass $agc_socket_{port};",
        "    proxy_protocol on;",
        "  }",
    ]


def _has_front(stream: StreamListen, *, shares_https: bool) -> bool:
    """Whether a TLS port has a front server (see _stream_servers): it has more
    than passthrough, listeners in mode Terminate or HTTPS listeners."""
    return stream.protocol == "TLS" and (shares_https or bool(stream.terminations))


def _stream_servers(
    host: str, stream: StreamListen, layout: InstanceLayout, *, shares_https: bool
) -> list[str]:
    """The servers of one TLS passthrough, TCP or UDP port.

    njs/streams.js picks each connection's backend endpoint from the stream's
    file (`$agc_stream` names the port's directory), so routes and endpoints
    change without a reload. TLS reads the ClientHello's SNI (ssl_preread). A
    TLS port that only passes TLS through has one server, which never decrypts.
    Any other TLS port (listeners in mode Terminate, or HTTPS listeners sharing
    it) has a front server that sends each connection, by the stream its SNI
    finds, to the passthrough server, to the server terminating that stream's
    listener (its certificate; then plain TCP to the backend), or else to the
    HTTPS server; all of them listen on unix sockets behind a PROXY protocol
    header, so they still see the client's address. Certificates of terminating
    listeners are static: a new one reloads NGINX.
    """
    port = int(stream.port)
    if not 0 < port < 65536:
        raise UnsafeValue(f"port {port} is out of range")
    directory = stream_port(port, stream.protocol)
    forward = [
        f"    set $agc_stream {directory};",
        "    proxy_pass $agc_stream_target;",
    ]
    if stream.protocol == "UDP":
        return [
            "  server {",
            f"    listen {host}:{port} udp reuseport;",
            *forward,
            # a datagram session ends this long after its last packet
            "    proxy_timeout 30s;",
            "  }",
        ]
    if stream.protocol == "TCP":
        return ["  server {", f"    listen {host}:{port} reuseport;", *forward, "  }"]
    if not _has_front(stream, shares_https=shares_https):
        return [
            "  server {",
            f"    listen {host}:{port} reuseport;",
            "    ssl_preread on;",
            *forward,
            "  }",
        ]
    # where a connection no stream takes goes: the HTTPS server, or nowhere
    otherwise = f"unix:{_socket(layout, 'https', port)}" if shares_https else "$agc_nowhere"
    out = [
        "  server {",
        f"    listen {host}:{port} reuseport;",
        "    ssl_preread on;",
        f"    set $agc_stream {directory};",
        f"    set $agc_passthrough unix:{_socket(layout, 'tls', port)};",
        # streams.js appends the terminating server's number and ".sock"
        f"    set $agc_terminate unix:{_path(layout.socket_dir)}/tls-{port}-;",
        f"    set $agc_otherwise {otherwise};",
        "    proxy_pass $agc_stream_front;",
        "    proxy_protocol on;",
        "  }",
    ]
    if stream.passthrough:
        out += [
            "  server {",
            f"    listen unix:{_socket(layout, 'tls', port)} {_BEHIND_STREAM};",
            "    ssl_preread on;",
            *forward,
            "  }",
        ]
    for number, certificate in enumerate(stream.terminations):
        cert = layout.pem_file(certificate.cert_pem, "cert")
        key = layout.pem_file(certificate.key_pem, "key")
        out += [
            "  server {",
            f"    listen unix:{_path(layout.terminate_socket(port, number))} ssl {_BEHIND_STREAM};",
            f"    ssl_certificate {nginx_string(str(cert))};",
            f"    ssl_certificate_key {nginx_string(str(key))};",
            "    ssl_protocols TLSv1.2 TLSv1.3;",
            *forward,
            "  }",
        ]
    return out


# Backends in the Istio mesh (docs/mesh.md): the gateway presents its workload
# certificate, loaded per connection from variables (lua/agc/mesh.lua), so a
# renewal needs no reload. The backend's certificate is not verified here:
# NGINX 1.22 checks a peer certificate only against a DNS name or IP address,
# and Istio's workload certificates carry a SPIFFE URI alone.
_MESH_LOCATIONS = [
    "    location @agc_mesh {",
    "      proxy_pass https://agc_backend_mesh;",
    "      proxy_ssl_certificate data:$agc_mesh_cert;",
    "      proxy_ssl_certificate_key data:$agc_mesh_key;",
    "    }",
    "    location @agc_mesh_grpc {",
    "      grpc_pass grpcs://agc_backend_mesh;",
    "      grpc_ssl_certificate data:$agc_mesh_cert;",
    "      grpc_ssl_certificate_key data:$agc_mesh_key;",
    "    }",
]


def _backend_tls_location(
    index: int, tls: BackendTLS, layout: InstanceLayout, settings: StaticSettings
) -> list[str]:
    return [
        f"    location @agc_tls_{index} {{",
        *_backend_tls_lines(index, tls, layout, settings),
        "    }",
    ]


def _error_pages_locations(
    needs: StaticNeeds, layout: InstanceLayout, settings: StaticSettings
) -> list[str]:
    """Custom error pages (HTTPRouteFilter errorPages): per set of status codes, and
    per upstream TLS setting a rule with them sends to, a location that proxies as
    the plain (or that TLS) one does and hands those answers to @agc_error_page,
    where the router sends the request to the error backend instead."""
    if not needs.error_pages:
        return []
    out = []
    for codes, tls_index in needs.error_pages:
        if not codes or any(not 400 <= code <= 599 for code in codes):
            raise UnsafeValue(f"error page status codes {codes!r} are not 400-599")
        proxy = (
            ["      proxy_pass http://agc_backend;"]
            if tls_index is None
            else _backend_tls_lines(tls_index, needs.backend_tls[tls_index], layout, settings)
        )
        out += [
            f"    location {error_pages_location(codes, tls_index)} {{",
            *proxy,
            "      proxy_intercept_errors on;",
            f"      error_page {' '.join(str(int(code)) for code in codes)} = @agc_error_page;",
            "    }",
        ]
    return [
        *out,
        "    location @agc_error_page {",
        '      access_by_lua_block { require("agc.router").error_page() }',
        "      proxy_pass http://agc_backend;",
        "    }",
    ]


def _backend_tls_lines(
    index: int, tls: BackendTLS, layout: InstanceLayout, settings: StaticSettings
) -> list[str]:
    """The directives of a location proxying over the upstream TLS setting `index`."""
    if not is_valid_hostname(tls.sni, wildcard=False):
        raise UnsafeValue(f"backend TLS hostname {tls.sni[:64]!r} is not a valid hostname")
    ca = settings.system_ca_bundle
    if tls.ca_pem is not None:
        ca = str(layout.pem_file(tls.ca_pem, "ca"))
    lines = [
        f"      proxy_pass https://agc_backend_tls_{index};",
        "      proxy_ssl_server_name on;",
        f"      proxy_ssl_name {nginx_string(tls.sni)};",
        "      proxy_ssl_verify on;",
        "      proxy_ssl_verify_depth 4;",
        f"      proxy_ssl_trusted_certificate {nginx_string(ca)};",
        "      proxy_ssl_session_reuse on;",
    ]
    if tls.client_certificate is not None:
        cert = layout.pem_file(tls.client_certificate.cert_pem, "client-cert")
        key = layout.pem_file(tls.client_certificate.key_pem, "client-key")
        lines += [
            f"      proxy_ssl_certificate {nginx_string(str(cert))};",
            f"      proxy_ssl_certificate_key {nginx_string(str(key))};",
        ]
    return lines
