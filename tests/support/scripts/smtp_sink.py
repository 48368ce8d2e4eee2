#!/usr/bin/env python3
"""A test SMTP server (aiosmtpd, from PyPI) that records every mail.

    smtp_sink.py LOG CERT KEY USER PASSWORD (starttls|implicit)

Listens on 127.0.0.1 (a free port, printed as the first line on stdout).
`starttls`: plain SMTP that requires STARTTLS before AUTH and AUTH before
MAIL; `implicit`: TLS from the first byte (SMTPS), then AUTH. Only USER with
PASSWORD may log in (PLAIN or LOGIN). Appends one JSON line per mail to LOG:
mail_from, rcpt_tos, data (the message), user (who logged in), tls.
"""
import json
import socket
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

log_path, cert, key, user, password, mode = sys.argv[1:7]

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


class Handler:
    async def handle_DATA(self, server, session, envelope):
        entry = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "user": session.auth_data.login.decode()
            if isinstance(session.auth_data, LoginPassword)
            else None,
            "authenticated": bool(session.authenticated),
            "tls": mode == "implicit" or session.ssl is not None,
        }
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        return "250 OK"


with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]

kwargs = dict(
    hostname="127.0.0.1",
    port=port,
    authenticator=authenticator,
    auth_required=True,
)
if mode == "starttls":
    kwargs.update(tls_context=context, require_starttls=True)
else:
    # TLS from the first byte: aiosmtpd cannot tell, so it is told not to
    # ask for STARTTLS before AUTH.
    kwargs.update(ssl_context=context, auth_require_tls=False)
controller = Controller(Handler(), **kwargs)
controller.start()
print(port, flush=True)
threading.Event().wait()
