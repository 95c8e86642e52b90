// Protocol sniffing for a plain-text port that takes HTTP/1.x and h2c (gRPC).
//
// An HTTP/2 client without TLS opens with a fixed 24-byte preface; anything
// else is HTTP/1.x. Decide as soon as the bytes read so far differ from the
// preface (the first byte, for every HTTP/1.x request line) or match all of it;
// $agc_h2c then picks the HTTP listener the stream server proxies to.
var PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';

function sniff(s) {
    var seen = '';
    s.on('upload', function (data, flags) {
        seen += data;
        var n = Math.min(seen.length, PREFACE.length);
        var h2 = seen.substring(0, n) === PREFACE.substring(0, n);
        if (h2 && n < PREFACE.length && !flags.last) {
            return;
        }
        s.variables.agc_h2c = h2 && n === PREFACE.length ? '1' : '0';
        s.off('upload');
        s.done();
    });
}

export default {sniff};
