"""Random identifiers an operator can type as a command-line argument.

``secrets.token_urlsafe`` draws from ``A-Za-z0-9-_``, so 1 id in 64 starts with ``-``, and
argparse then reads ``fhir-gateway shl revoke -fAy…`` as an unknown option.  Ids that go to a
command line (SMART client ids, SMART Health Link ids) are drawn again until they do not.
"""

from __future__ import annotations

import secrets


def random_id(nbytes: int) -> str:
    """``nbytes`` of randomness, base64url without padding, never starting with ``-``."""
    while True:
        ident = secrets.token_urlsafe(nbytes)
        if not ident.startswith("-"):
            return ident
