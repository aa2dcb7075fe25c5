"""What a SMART client discovers: ``.well-known/smart-configuration`` and the
CapabilityStatement's ``rest.security`` (one source for both)."""

from __future__ import annotations

from .tokens import ASSERTION_ALGS

SCOPES = ["system/*.rs", "system/*.read", "system/Patient.rs", "system/Observation.rs"]


def smart_config(base: str) -> dict:
    return {
        "issuer": base,
        "token_endpoint": f"{base}/auth/token",
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": SCOPES,
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
        "code_challenge_methods_supported": [],
    }


def security(base: str, cors: bool) -> dict:
    return {
        "cors": cors,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                           "restful-security-service", "code": "SMART-on-FHIR"}],
                     "text": "SMART Backend Services (client_credentials, private_key_jwt "
                             "RS384/ES384; system scopes v1 and v2)"},
                    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                           "restful-security-service", "code": "OAuth"}],
                     "text": "Static bearer tokens from `fhir-gateway token create`"}],
        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/"
                              "oauth-uris",
                       "extension": [{"url": "token", "valueUri": f"{base}/auth/token"}]}],
        "description": "Authorization: Bearer <token>: a SMART Backend Services access token "
                       "(POST the signed client assertion to the token URL; discovery at "
                       ".well-known/smart-configuration) or a static token bound to one "
                       "facility or '*'. Scopes are enforced per resource type: r = read, "
                       "vread, history; s = search, $everything, $export.",
    }
