"""The patient's own summary, built from the backup on request.

* :mod:`.select`    – what belongs in a summary (pure: resources in, chosen resources out);
* :mod:`.ips`       – ``Patient/[id]/$summary``: an International Patient Summary document;
* :mod:`.clins`     – ``Patient/[id]/$jp-clins``: the JP-CLINS 5情報 + 処方 collection Bundles;
* :mod:`.shl`       – SMART Health Links: the summary encrypted for the patient to carry;
* :mod:`.views`     – the public SHL endpoints (manifest and file) as a Flask blueprint.

Nothing here reads storage: the service layer hands over the patient's mapped resources."""

from __future__ import annotations


def init_app(app, gateway) -> None:  # noqa: ARG001 - the extension hook's signature
    """Attach the public SMART Health Link endpoints (``/shl/...``)."""
    from .views import blueprint
    app.register_blueprint(blueprint)
