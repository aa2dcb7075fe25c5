"""SMART Backend Services (SMART App Launch 2.x): registered system clients authenticate with a
signed JWT assertion (``private_key_jwt``, RS384/ES384) and get short-lived access tokens whose
scopes (``system/Observation.rs``, ``system/*.read``) the API enforces per type and interaction.

* :mod:`.clients`  the client registry (data directory, ``fhir-gateway client``)
* :mod:`.scopes`   scope grammar (v1 and v2), granting and checking
* :mod:`.tokens`   the token endpoint: assertion checks, ``jti`` replay store, access tokens
"""

from .clients import Client, ClientStore, ClientStoreError
from .scopes import allows, grant, parse_scope
from .tokens import ACCESS_TOKEN_SECONDS, OAuthError, SmartAuthority

__all__ = ["ACCESS_TOKEN_SECONDS", "Client", "ClientStore", "ClientStoreError", "OAuthError",
           "SmartAuthority", "allows", "grant", "parse_scope"]
