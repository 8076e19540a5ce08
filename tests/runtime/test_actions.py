"""runtime/actions.py: what a step returns; a bad action fails where it is made."""
import pytest

from mosnx.runtime.actions import LocalReply, redirect


def test_local_reply_validates():
    with pytest.raises(ValueError):
        LocalReply(99)
    assert LocalReply(200, "text").body == b"text"
    assert dict(redirect(308, "/x").headers)["location"] == "/x"
    with pytest.raises(ValueError):
        redirect(200, "/x")
