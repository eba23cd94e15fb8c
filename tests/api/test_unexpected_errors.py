"""A bug's error (not one of ours) is a 500 whose text names its type and does not ask the user
to repeat what will fail the same way again, in the API and in the browser."""

from __future__ import annotations

import json

from app.api_errors import response_for
from ui.page_text import warning


def test_the_api_names_the_failure_and_does_not_ask_for_a_retry():
    response = response_for(KeyError("model.layers.0"))
    message = json.loads(response.body)["error"]["message"]
    assert response.status_code == 500
    assert "KeyError" in message and "will fail again" in message
    assert "try again" not in message.lower() and "model.layers" not in message


def test_the_page_says_the_same():
    shown = warning(KeyError("model.layers.0"))
    assert "KeyError" in shown and "will fail again" in shown and "try again" not in shown.lower()
