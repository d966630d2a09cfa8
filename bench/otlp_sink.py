"""A minimal OTLP/HTTP sink for the metrics-on benchmark (docs/benchmarks.md): answers every
POST with 200 and counts exports. Usage: python3 bench/otlp_sink.py PORT"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("content-length", 0)); self.rfile.read(n)
        H.count += 1; H.bytes += n
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
        if H.count % 10 == 0: print(f"{H.count} exports, {H.bytes} bytes", flush=True)
    def log_message(self, *a): pass
H.count = 0; H.bytes = 0
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
