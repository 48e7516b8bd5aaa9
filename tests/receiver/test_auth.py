from receiver.auth import bearer_allowed, parse_tokens

TOKENS = parse_tokens(" old-token , new-token ,, ")


def test_tokens_are_comma_separated_and_blanks_dropped():
    assert TOKENS == (b"old-token", b"new-token")
    assert parse_tokens(None) == () and parse_tokens(" , ") == ()


def test_every_configured_token_is_accepted_during_a_rotation():
    assert bearer_allowed(b"Bearer old-token", TOKENS)
    assert bearer_allowed(b"bearer new-token", TOKENS)


def test_anything_else_is_refused():
    for header in (
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer old-toke",
        b"Bearer old-token-and-more",
        b"Basic old-token",
        b"old-token",
    ):
        assert not bearer_allowed(header, TOKENS), header


def test_no_configured_token_accepts_nothing():
    assert not bearer_allowed(b"Bearer ", ())
    assert not bearer_allowed(b"Bearer anything", ())
