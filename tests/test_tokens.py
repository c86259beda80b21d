"""Signed link tokens (drip.tokens): opaque, per purpose, tamper-evident, and only
confirmation links expire."""

from __future__ import annotations

import time

import pytest

from drip import tokens
from drip.tokens import InvalidToken, Links, Tokens

SECRET = "test-secret-key-0123456789abcdef"


def test_a_token_gives_back_the_ids_it_was_made_for() -> None:
    made = Tokens(SECRET).make(tokens.CONFIRM, 12345, 678)
    assert Tokens(SECRET).read(tokens.CONFIRM, made) == [12345, 678]


def test_a_token_carries_ids_never_an_address() -> None:
    made = Tokens(SECRET).make(tokens.UNSUBSCRIBE, 42)
    assert "@" not in made and made.startswith("16~")  # 42 in base 36, then the signature


def test_a_token_for_one_purpose_is_refused_for_another() -> None:
    made = Tokens(SECRET).make(tokens.UNSUBSCRIBE, 7)
    with pytest.raises(InvalidToken, match="not valid"):
        Tokens(SECRET).read(tokens.PREFERENCES, made)


def test_a_changed_id_or_another_secret_is_refused() -> None:
    made = Tokens(SECRET).make(tokens.CLICK, 7)
    forged = "8" + made[1:]
    with pytest.raises(InvalidToken):
        Tokens(SECRET).read(tokens.CLICK, forged)
    with pytest.raises(InvalidToken):
        Tokens("another-secret-key-0123456789abcd").read(tokens.CLICK, made)


def test_an_overlong_or_garbled_token_is_refused_without_work() -> None:
    with pytest.raises(InvalidToken):
        Tokens(SECRET).read(tokens.CLICK, "x" * (tokens.MAX_TOKEN_LENGTH + 1))
    with pytest.raises(InvalidToken):
        Tokens(SECRET).read(tokens.CLICK, "not-a-token")


def test_confirmation_links_expire_and_unsubscribe_links_do_not() -> None:
    short_lived = Tokens(SECRET, confirm_max_age=0)
    confirm = short_lived.make(tokens.CONFIRM, 1, 2)
    unsubscribe = short_lived.make(tokens.UNSUBSCRIBE, 1)
    time.sleep(1.1)  # TimestampSigner counts whole seconds
    with pytest.raises(InvalidToken, match="expired"):
        short_lived.read(tokens.CONFIRM, confirm)
    assert short_lived.read(tokens.UNSUBSCRIBE, unsubscribe) == [1]


def test_links_are_absolute_and_read_back_to_their_ids() -> None:
    signer = Tokens(SECRET)
    links = Links("https://drip.test", signer)
    assert links.unsubscribe(5).startswith("https://drip.test/u/")
    assert signer.read(tokens.UNSUBSCRIBE, links.unsubscribe(5).rsplit("/", 1)[1]) == [5]
    assert signer.read(tokens.PREFERENCES, links.preferences(5).rsplit("/", 1)[1]) == [5]
    assert signer.read(tokens.CLICK, links.click(99).rsplit("/", 1)[1]) == [99]
    assert signer.read(tokens.CONFIRM, links.confirm(5, 6).rsplit("/", 1)[1]) == [5, 6]


# Links already in people's mailboxes must keep working: the tokens a given key makes never
# change (these were made by the first release and must still be made and accepted).
RELEASED = {
    tokens.UNSUBSCRIBE: "16~F7DOz6C-M6NaAdwM2Ez90tWiD3U",
    tokens.PREFERENCES: "16~QryN_xvEhUR_wE8386hXddm1mnM",
    tokens.CLICK: "16~N4fEuaNX8pX-Kf8ruuAkU06ZoLo",
}


@pytest.mark.parametrize(("purpose", "released"), RELEASED.items())
def test_links_sent_by_an_earlier_release_still_work(purpose: str, released: str) -> None:
    assert Tokens(SECRET).make(purpose, 42) == released
    assert Tokens(SECRET).read(purpose, released) == [42]


def test_links_made_without_itsdangerous_are_the_ones_it_makes_and_reads() -> None:
    made = Tokens(SECRET)
    for purpose in (tokens.UNSUBSCRIBE, tokens.PREFERENCES, tokens.CLICK):
        for number in (0, 1, 35, 36, 42, 1_000_000, 2**40 + 17):
            token = made.make(purpose, number)
            assert token == made._signers[purpose].sign(tokens._encode((number,))).decode()
            assert made.read(purpose, token) == [number]
    # A key longer than SHA-1's block is hashed first, as HMAC does.
    long_key = Tokens("k" * 200)
    assert long_key.read(tokens.CLICK, long_key.make(tokens.CLICK, 5)) == [5]
    assert long_key.make(tokens.CLICK, 5) == long_key._signers[tokens.CLICK].sign(b"5").decode()


def test_confirmation_links_made_without_itsdangerous_are_its_timestamped_ones() -> None:
    made = Tokens(SECRET)
    assert tokens.CONFIRM in made._fast_timed, "made by the fast path"
    signer = made._signers[tokens.CONFIRM]
    for ids in ((1, 2), (42, 1_000_000), (2**40, 7)):
        for _ in range(5):  # both made within one second, so with the same timestamp
            before = int(time.time())
            token = made.make(tokens.CONFIRM, *ids)
            theirs = signer.sign(tokens._encode(ids)).decode()
            if int(time.time()) == before:
                break
        assert token == theirs
        assert made.read(tokens.CONFIRM, token) == list(ids)


def test_a_lessons_links_are_the_ones_made_one_by_one() -> None:
    links = Links("https://drip.test", Tokens(SECRET))
    assert links.lesson(42, 77) == (links.unsubscribe(42), links.preferences(42), links.click(77))
