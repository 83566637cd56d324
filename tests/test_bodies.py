"""How a body becomes fields: form or JSON, whatever the content type's parameters say."""

from __future__ import annotations

from app.edge.bodies import fields_from_body

FORM = "application/x-www-form-urlencoded"


def test_a_form_is_a_form_whatever_parameters_follow_its_type() -> None:
    body = b"cid=c1&event_id=quote_viewed"
    for content_type in (FORM, f"{FORM}; charset=utf-8",
                         f"{FORM}; charset=utf-8; boundary=unused", f" {FORM.upper()} ;x=1"):
        assert fields_from_body(body, content_type) == {
            "cid": "c1", "event_id": "quote_viewed"}, content_type


def test_json_sent_as_a_form_is_read_as_json_even_after_blank_space() -> None:
    # Clients that cannot choose their content type may send JSON as a form: the first
    # character that is not blank space decides.
    for body in (b'{"cid":"c1"}', b'  \n{"cid":"c1"}', b'{"cid":"c1"}  \n'):
        assert fields_from_body(body, FORM) == {"cid": "c1"}, body
