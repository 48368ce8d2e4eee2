# A TLS front for the engine, for tests: TLS (client certificates required)
# on 127.0.0.1:PORT, each connection forwarded to a Unix socket. Python's ssl
# module (OpenSSL) is an implementation independent of the rustls client under
# test. Usage: tls_front.py PORT CERT KEY CA UPSTREAM_SOCKET
import socket, ssl, sys, threading
port, cert, key, ca, upstream = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
srv = socket.create_server(("127.0.0.1", port))
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except OSError: pass
    try: b.shutdown(socket.SHUT_WR)
    except OSError: pass
def serve(raw):
    try: tls = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError): raw.close(); return
    up = socket.socket(socket.AF_UNIX); up.connect(upstream)
    t = threading.Thread(target=pump, args=(up, tls), daemon=True); t.start()
    pump(tls, up); t.join()
    tls.close(); up.close()
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
