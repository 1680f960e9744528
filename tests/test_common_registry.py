"""The name registry every named family (attribution methods, metrics) is built on."""

import pytest

from common.registry import NameRegistry


class _Scale:
    def __init__(self, factor: float = 1.0, offset: float = 0.0) -> None:
        self.factor, self.offset = factor, offset


class _Other:
    pass


def test_names_keep_registration_order_and_fixed_arguments_apply():
    registry: NameRegistry[object] = NameRegistry("thing")
    registry.register("scale", _Scale)
    registry.register("double", _Scale, factor=2.0)
    assert registry.names() == ("scale", "double")
    assert "double" in registry and "triple" not in registry
    built = registry.build("double", offset=1.0)
    assert (built.factor, built.offset) == (2.0, 1.0)
    assert registry.entry("double").options() == ("offset",)


def test_unknown_name_and_option_errors_name_the_allowed_values():
    registry: NameRegistry[object] = NameRegistry("thing")
    registry.register("scale", _Scale)
    with pytest.raises(ValueError, match=r"thing must be one of \('scale',\), got 'scal'"):
        registry.build("scal")
    with pytest.raises(ValueError, match=r"options must be among \('factor', 'offset'\), got \['gain'\]"):
        registry.build("scale", gain=3)


def test_a_name_taken_by_another_class_is_refused_but_the_same_class_may_register_again():
    registry: NameRegistry[object] = NameRegistry("thing")
    registry.register("scale", _Scale)
    registry.register("scale", _Scale, factor=3.0)  # the same class again: replaced
    assert registry.build("scale").factor == 3.0
    with pytest.raises(ValueError, match="already registered"):
        registry.register("scale", _Other)
    with pytest.raises(ValueError, match="non-empty string"):
        registry.register(" scale", _Scale)
