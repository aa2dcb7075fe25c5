"""Ids an operator types on a command line never start with '-': a random id like
``-A0xVTx2NE-IgQTU`` made smart-fetch read ``--smart-client-id`` as having no value, and
``fhir-gateway shl revoke -fAy…`` was refused by argparse (1 id in 64, seen in a CI run)."""

from fhir_gateway.smart.clients import new_client_id
from fhir_gateway.summary.shl import LinkStore


def test_client_ids_never_look_like_options():
    ids = [new_client_id() for _ in range(5000)]       # ~78 would start with '-' by chance
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)


def test_health_link_ids_never_look_like_options(tmp_path):
    store = LinkStore(tmp_path)
    ids = [store.create(facility="1310000017", patient="p1", document=b"{}",
                        base_url="https://h.example")[0].id for _ in range(400)]
    assert not [i for i in ids if i.startswith("-")]   # ~6 would by chance: missed 1 in 500,000
    assert len(set(ids)) == len(ids)
