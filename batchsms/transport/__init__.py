"""Transport: one HTTP exchange with the SMS endpoint, signed, bounded, its errors mapped once.

    client.py       `SmsClient`: a pooled session, one request -> `Reply` or `TransportError`
    signing.py      AK/SK signing as the official SDK signs, and token auth
    credentials.py  where credentials come from (environment, file)
    endpoint.py     the endpoint (`--endpoint`/`--region`), TLS trust, a run's authenticator
    untrusted.py    bounding and cleaning text servers send (and cutting secrets out of it)
"""
