"""SMART client ids are safe on a command line: never starting with '-' (a random id like
``-A0xVTx2NE-IgQTU`` made smart-fetch read ``--smart-client-id`` as having no value)."""

from fhir_gateway.smart.clients import new_client_id


def test_client_ids_never_look_like_options():
    ids = [new_client_id() for _ in range(5000)]       # ~78 would start with '-' by chance
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)
