"""``spend-receiver``: the webhook service that lands LiteLLM's ``generic_api`` callback events.

``app`` is the ASGI app, ``decode`` reads the three LiteLLM body formats, ``auth`` checks
bearer tokens, ``commit`` group-commits batches to the landing zone (``resources.landing``),
``metrics`` renders Prometheus text and ``cli`` serves it all on uvicorn.
"""
