"""``spend-receiver``: the webhook service that lands LiteLLM's ``generic_api`` callback events.

``app`` is the ASGI app, ``decode`` reads the three LiteLLM body formats into typed events,
``auth`` checks bearer tokens, ``commit`` group-commits batches to the landing zone
(``resources.landing``), ``metrics`` renders Prometheus text for every worker, ``connections``
holds what the receiver's connections do beyond uvicorn's, ``memory`` settles a process's
memory when it starts serving, and ``cli`` serves it all on uvicorn, in one process or one per
core.
"""
