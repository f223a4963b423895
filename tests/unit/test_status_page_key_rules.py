"""The status page key's pure rules: what counts as a key, that the block refuses anything else
without echoing it, and that a fleet file without the field names the default block."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hotspare.planning.subscriptions import key_text, page_token


def test_a_key_is_64_hex_digits_in_either_case_and_whitespace_around_is_ignored():
    digits = "0123456789abcdef" * 4
    assert key_text(digits) == digits
    assert key_text("  " + digits.upper() + "\n") == digits
    assert page_token(bytes.fromhex(digits.upper()), "acme") == page_token(bytes.fromhex(digits), "acme")
    for text in ("", "\n", digits[:-1], digits + "0", "g" + digits[1:], digits[:32] + " " + digits[32:], "0x" + digits[2:]):
        assert key_text(text) is None, text


def test_the_block_refuses_a_malformed_key_without_echoing_it():
    from blocks.credentials import StatusPageKey

    value = "feedface" * 7 + "secret!!"
    with pytest.raises(ValidationError) as refused:
        StatusPageKey(key=value)
    assert "feedface" not in str(refused.value) and "secret" not in str(refused.value)
    assert "64 hex digits" in str(refused.value)
    block = StatusPageKey(key="ab" * 32)
    assert "ab" * 32 not in repr(block) and "ab" * 32 not in str(block)


def test_a_fleet_file_without_the_field_names_the_default_block():
    from hotspare.fleet.customer_schema import CustomerNotices

    assert CustomerNotices().status_page_key_block == "status-page-key"
    assert CustomerNotices(status_page_key_block="fleet-b-status-key").status_page_key_block == "fleet-b-status-key"
    with pytest.raises(ValidationError):
        CustomerNotices(status_page_key_block="Not A Name")
