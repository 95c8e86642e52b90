// Where a TLS passthrough, TCP or UDP connection goes (static.py's stream servers).
//
// Each stream is a file under $agc_streams_dir: <tcp|udp>-<port>/<hostname>,
// holding JSON (state.Stream): {"backends": [{"weight": w, "endpoints": ["a:p",
// ...]}, ...], "terminate": n} ("terminate" only for a TLS listener in mode
// Terminate); streams.py writes each whole and renames it into place. A connection
// reads the file it needs when it starts, so a change of routes or endpoints
// takes effect for the next connection without a reload; njs keeps nothing
// between connections.
//
// TLS streams are found by the ClientHello's SNI (read by ssl_preread, or by the
// server that terminated the TLS): the exact name, then each wildcard above it
// (*.b.c, then *.c), then "*"; TCP and UDP streams are "*".
// The SNI is the client's: it is used as a file name only when it is a
// well-formed DNS name.
import fs from 'fs';

var DNS_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function candidates(sni) {
    var names = [];
    if (sni && sni.length <= 253 && DNS_NAME.test(sni)) {
        names.push(sni);
        var labels = sni.split('.');
        for (var i = 1; i < labels.length; i++) {
            names.push('*.' + labels.slice(i).join('.'));
        }
    }
    names.push('*');
    return names;
}

// the stream this connection belongs to, or null
function lookup(s) {
    var dir = s.variables.agc_streams_dir + '/' + s.variables.agc_stream + '/';
    var v = s.variables;
    var sni = v.ssl_preread_server_name || v.ssl_server_name || '';
    var names = candidates(sni.toLowerCase());
    for (var i = 0; i < names.length; i++) {
        var text;
        try {
            text = fs.readFileSync(dir + names[i], 'utf8');
        } catch (e) {
            continue;
        }
        return JSON.parse(text);
    }
    return null;
}

// one endpoint by the backends' weights, then evenly among the chosen one's
function pick(backends) {
    var total = 0, i;
    for (i = 0; i < backends.length; i++) {
        total += backends[i].weight;
    }
    if (total <= 0) {
        return null;
    }
    var left = Math.random() * total;
    var chosen = backends[backends.length - 1];
    for (i = 0; i < backends.length; i++) {
        left -= backends[i].weight;
        if (left < 0) {
            chosen = backends[i];
            break;
        }
    }
    var endpoints = chosen.endpoints || [];
    if (!endpoints.length) {
        return null;
    }
    return endpoints[Math.floor(Math.random() * endpoints.length)];
}

// $agc_stream_target: the endpoint to proxy to. A connection with no stream, or
// whose share goes to a backend without endpoints, is sent $agc_nowhere (a
// socket nothing listens on): NGINX closes it at once.
function target(s) {
    var stream = lookup(s);
    var endpoint = stream ? pick(stream.backends) : null;
    return endpoint || s.variables.agc_nowhere;
}

// $agc_stream_front: on a TLS port with more than passthrough (listeners in mode
// Terminate, or HTTPS listeners), the server for this SNI's stream: the one
// terminating its listener's TLS, or the passthrough server; with no stream,
// $agc_otherwise (the HTTPS server, or nowhere)
function front(s) {
    var stream = lookup(s);
    if (!stream) {
        return s.variables.agc_otherwise;
    }
    if (stream.terminate !== undefined) {
        return s.variables.agc_terminate + stream.terminate + '.sock';
    }
    return s.variables.agc_passthrough;
}

export default {target, front};
