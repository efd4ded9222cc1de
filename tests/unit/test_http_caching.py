"""GET answers' validators (`queries.http_caching`): a strong tag made from the bytes,
and `If-None-Match` as RFC 9110 compares it (weakly, a list, or `*`)."""

import pytest

from shopflow.queries.http_caching import entity_tag, matches

TAG = entity_tag(b'{"window_hours":72,"products":[]}')


def test_the_tag_is_quoted_and_follows_the_bytes() -> None:
    assert TAG.startswith('"')
    assert TAG.endswith('"')
    assert entity_tag(b'{"window_hours":72,"products":[]}') == TAG
    assert entity_tag(b'{"window_hours":72,"products":[1]}') != TAG


@pytest.mark.parametrize("header", [TAG, f"W/{TAG}", f'"other", {TAG}', f'"other",W/{TAG} ', "*"])
def test_if_none_match_naming_the_tag_matches(header: str) -> None:
    assert matches(header, TAG)


@pytest.mark.parametrize("header", [None, "", '"other"', TAG.strip('"'), f'"x{TAG[1:]}'])
def test_if_none_match_naming_another_tag_does_not(header: str | None) -> None:
    assert not matches(header, TAG)
