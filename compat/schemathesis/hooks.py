"""schemathesis hooks: the console session every test case carries.

The document declares three credentials (see its securitySchemes): the session cookie, the
pre-session cookie of sign-up and login, and the `X-CSRF-Token` header that goes with either.
This provider hands each operation the ones it declares, from the state run.py prepared:

* sign-up and login get an anonymous browser's pre-session cookie and its token;
* `POST /logout` gets a session of its own (of the `spare` account, one per case while they
  last, then a well-formed session id that is not live): ending the session every other case uses
  would turn the rest of the run into 401s and test nothing;
* everything else gets the `owner` session (2FA on, stepped up) and its token.

Credentials go in `case.cookies`, not a raw `Cookie` header, so that cookies the run's HTTP
client picked up from answers (a sign-up logs the new account in) never replace them.
"""

from __future__ import annotations

import json
import os
import threading

import schemathesis

with open(os.environ["KEYGATE_SCHEMATHESIS_STATE"]) as f:
    STATE = json.load(f)

_lock = threading.Lock()
_spare = list(STATE["spare"])
# Well-formed (kgsess_ and 43 base62 characters, as the service issues them) but not live.
_DEAD = {"cookies": {"kg_session": "kgsess_" + "A" * 43}, "csrf": "0" * 64}
_ANONYMOUS = {"/api/console/v1/signup", "/api/console/v1/login"}


@schemathesis.auth(refresh_interval=None, retry_on=[])
class ConsoleSession:
    def get(self, case, context):
        op = case.operation
        if op.path in _ANONYMOUS:
            return STATE["anonymous"]
        if op.method.upper() == "POST" and op.path == "/api/console/v1/logout":
            with _lock:
                return _spare.pop() if _spare else _DEAD
        return STATE["owner"]

    def set(self, case, data, context):
        case.cookies = dict(case.cookies or {})
        case.cookies.update(data["cookies"])
        case.headers = case.headers or {}
        case.headers["X-CSRF-Token"] = data["csrf"]
