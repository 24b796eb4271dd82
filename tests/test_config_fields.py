"""The one way settings dataclasses are built from dicts and JSON: what a user sees on a typo."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tfx_serving_ext.config_fields import dataclass_from_mapping


class SettingsError(ValueError):
    pass


@dataclass
class Settings:
    address: str
    num_requests: int = 10
    labels: dict[str, str] = field(default_factory=dict)


def build(value):
    return dataclass_from_mapping(Settings, value, what="test settings", error=SettingsError)


def test_unknown_key_names_it_the_accepted_keys_and_a_likely_fix():
    with pytest.raises(SettingsError) as raised:
        build({"address": "a:1", "num_request": 5, "colour": "red"})
    message = str(raised.value)
    assert message.startswith("unknown test settings ['colour', 'num_request']")
    assert "the accepted keys are address, labels, num_requests" in message
    assert "'num_request' -> 'num_requests'?" in message
    assert "remove them or correct their spelling" in message


def test_a_capitalised_name_starts_the_message_with_a_capital():
    with pytest.raises(SettingsError, match=r"^Unknown Cloud Run settings \['x'\]"):
        dataclass_from_mapping(
            Settings, {"address": "a", "x": 1}, what="Cloud Run settings", error=SettingsError
        )


def test_json_string_dict_and_instance():
    from_json = build('{"address": "a:1", "labels": {"stable": "2"}}')
    assert from_json == Settings("a:1", 10, {"stable": "2"})
    assert build({"address": "a:1", "labels": {"stable": "2"}}) == from_json
    assert build(from_json) is from_json


def test_missing_required_invalid_json_and_not_an_object():
    with pytest.raises(SettingsError, match="test settings: address required but not given"):
        build(None)
    with pytest.raises(SettingsError, match="test settings: not valid JSON"):
        build("{address: 1}")
    with pytest.raises(SettingsError, match="must be a JSON object"):
        build("[1, 2]")


def test_a_value_the_dataclass_cannot_take_raises_the_callers_error():
    @dataclass
    class Positive:
        n: int = 1

        def __post_init__(self):
            if self.n <= 0:  # a string here raises TypeError
                raise SettingsError("n must be positive")

    with pytest.raises(SettingsError, match="invalid positive settings: .*'<=' not supported"):
        dataclass_from_mapping(Positive, {"n": "3"}, what="positive settings", error=SettingsError)
    with pytest.raises(SettingsError, match="n must be positive"):
        dataclass_from_mapping(Positive, {"n": 0}, what="positive settings", error=SettingsError)
