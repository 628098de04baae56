"""A real SMTP server for the e2e tests (aiosmtpd), started by e2e::smtp.

Usage: smtp_server.py PORT MESSAGES_FILE READY_FILE [USER PASSWORD]

Listens on 127.0.0.1:PORT (0 = any free port), appends one JSON line per
received message to MESSAGES_FILE (envelope sender and recipients, subject
and text body decoded), writes the bound port to READY_FILE once it accepts
connections, and exits when its standard input closes (the test process
ended, even by SIGKILL) or on SIGTERM. With USER and PASSWORD it requires
AUTH (PLAIN or LOGIN, allowed without TLS: loopback only).
"""

import asyncio
import email
import email.policy
import json
import os
import signal
import sys
import threading

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def text_of(msg):
    """The decoded text/plain body (CTE and charset undone), LF line ends."""
    part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
    if part is None:
        return ""
    body = part.get_content()
    if not isinstance(body, str):
        body = bytes(body).decode("utf-8", "replace")
    return body.replace("\r\n", "\n")


class Recorder:
    def __init__(self, path):
        self.path = path

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        record = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(msg.get("subject", "")),
            "body": text_of(msg),
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        # One write of a whole line: a reader never sees half a record
        # unless it reads while this write is in progress (it skips an
        # unterminated last line).
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return "250 OK"


def authenticator_for(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd itself answers 535 on failure.
        return AuthResult(success=ok, handled=False)

    return authenticate


def exit_when_stdin_closes():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


async def main():
    port = int(sys.argv[1])
    messages, ready = sys.argv[2], sys.argv[3]
    auth = sys.argv[4:6] if len(sys.argv) >= 6 else None
    recorder = Recorder(messages)

    def factory():
        if auth:
            return SMTP(
                recorder,
                hostname="e2e-smtp",
                authenticator=authenticator_for(*auth),
                auth_required=True,
                auth_require_tls=False,
            )
        return SMTP(recorder, hostname="e2e-smtp")

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(factory, host="127.0.0.1", port=port, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    tmp = ready + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(bound))
    os.rename(tmp, ready)
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    await stop
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
