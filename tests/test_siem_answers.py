"""What a get-siem-logs answer means: a file and its next token, caught up, or a classified error."""

from __future__ import annotations

import orjson
import pytest

from collector.api.errors import Action, ApiError
from collector.api.siem_v1 import SiemAnswer, parse_siem_answer, request_data

ZIP_HEAD = b"PK\x03\x04" + b"\x00" * 26
FILE_HEADERS = {
    "Content-Type": "application/octet-stream",
    "Content-Disposition": 'attachment; filename="receipt_20261201093329655.zip"',
    "mc-siem-token": "tok-2",
}


def parse(status: int, headers: dict[str, str], body: bytes) -> SiemAnswer:
    return parse_siem_answer(status, headers, body, oauth2=False)


def test_a_zip_answer_is_a_file_with_its_name_and_next_token() -> None:
    """octet-stream, Content-Disposition and mc-siem-token: the file, its name, where to go next."""
    answer = parse(200, FILE_HEADERS, ZIP_HEAD)
    assert answer == SiemAnswer(ZIP_HEAD, "receipt_20261201093329655.zip", "tok-2")
    assert not answer.caught_up


def test_a_plain_json_file_is_a_file_not_a_status() -> None:
    """compress=false: the body is JSON, but the disposition says it is a file."""
    headers = {**FILE_HEADERS, "Content-Disposition": 'attachment; filename="delivery_1.json"'}
    body = orjson.dumps({"type": "MTA", "data": []})
    assert parse(200, headers, body) == SiemAnswer(body, "delivery_1.json", "tok-2")


@pytest.mark.parametrize(
    "body",
    [
        {"meta": {"status": 200, "isLastToken": True}, "data": [], "fail": []},
        {"meta": {"status": 200}, "data": [], "fail": []},
        {"meta": {"status": 200, "isLastToken": False}, "data": []},
    ],
)
def test_a_json_answer_without_failure_is_caught_up(body: dict[str, object]) -> None:
    """No file: caught up, whether or not meta.isLastToken is there (sources differ)."""
    answer = parse(200, {"Content-Type": "application/json"}, orjson.dumps(body))
    assert answer.caught_up
    assert answer.next_token is None


def test_caught_up_keeps_a_token_the_answer_names() -> None:
    """A caught-up answer that carries a token reports it (the strategy keeps its own)."""
    answer = parse(200, {"Content-Type": "application/json", "mc-siem-token": "tok-1"}, b'{"data": []}')
    assert (answer.caught_up, answer.next_token) == (True, "tok-1")


def test_a_failure_inside_a_200_is_classified() -> None:
    """fail[] with a non-retryable code inside a 200 is fatal, with the API's message."""
    body = {"meta": {"status": 200}, "data": [], "fail": [{"errors": [{"code": "err_x", "message": "no SIEM"}]}]}
    with pytest.raises(ApiError) as raised:
        parse(200, {"Content-Type": "application/json"}, orjson.dumps(body))
    assert (raised.value.action, str(raised.value)) == (Action.FATAL, "no SIEM")


@pytest.mark.parametrize(
    ("status", "body", "action"),
    [
        (401, b'{"fail": [{"errors": [{"code": "err_xdk_invalid_signature", "message": "bad"}]}]}', Action.FATAL),
        (403, b'{"fail": [{"errors": [{"code": "err_xdk_forbidden", "message": "no"}]}]}', Action.FATAL),
        (429, b'{"fail": [{"errors": [{"code": "err_xdk_rate_limit_exceeded", "message": "q"}]}]}', None),
        (503, b"<html><body>503 Service Unavailable</body></html>", Action.RETRY),
        (500, b"", Action.RETRY),
    ],
)
def test_error_statuses_use_the_shared_table(status: int, body: bytes, action: Action | None) -> None:
    """Errors are classified as for every endpoint (a 429 waits like any throttle)."""
    with pytest.raises(ApiError) as raised:
        parse(status, {"Content-Type": "application/json"}, body)
    if action is None:
        assert raised.value.action is Action.RATE_LIMITED
    else:
        assert raised.value.action is action


def test_a_file_without_a_token_is_retried() -> None:
    """A file with no mc-siem-token cannot be passed: asked again (retryable), never skipped."""
    headers = {k: v for k, v in FILE_HEADERS.items() if k != "mc-siem-token"}
    with pytest.raises(ApiError) as raised:
        parse(200, headers, ZIP_HEAD)
    assert raised.value.action is Action.RETRY


def test_an_html_page_in_a_200_is_retried() -> None:
    """A proxy's HTML page: no file, no JSON object: malformed, retried."""
    with pytest.raises(ApiError) as raised:
        parse(200, {"Content-Type": "text/html"}, b"<html>login</html>")
    assert raised.value.action is Action.RETRY


def test_request_data_has_no_token_at_first_and_the_options_win() -> None:
    """The first request has no token; stream options replace the defaults."""
    assert request_data(None, {}) == {"type": "MTA", "fileFormat": "json", "compress": True}
    assert request_data("t", {"fileFormat": "key_value", "compress": False}) == {
        "type": "MTA",
        "fileFormat": "key_value",
        "compress": False,
        "token": "t",
    }
