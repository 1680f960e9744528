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
    with pytest.raises(ValueError, match=r"thing must be one of \('scale',\) or the import path of a registered class, got 'scal'"):
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


def test_a_class_is_found_by_its_import_path_after_its_module_registers_it(tmp_path, monkeypatch):
    registry: NameRegistry[object] = NameRegistry("thing")
    module = tmp_path / "outside_members.py"
    module.write_text(
        "from tests.test_common_registry import REGISTRY_FOR_IMPORT\n"
        "class Outside:\n"
        "    def __init__(self, size: int = 1) -> None:\n"
        "        self.size = size\n"
        "REGISTRY_FOR_IMPORT.register('outside', Outside)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    global REGISTRY_FOR_IMPORT
    REGISTRY_FOR_IMPORT = registry
    assert "outside" not in registry
    built = registry.build("outside_members.Outside", size=3)
    assert built.size == 3 and registry.name_of("outside_members.Outside") == "outside"
    with pytest.raises(ValueError, match="import path of a registered class"):
        registry.entry("no_such_module.Thing")


REGISTRY_FOR_IMPORT: NameRegistry[object] = NameRegistry("thing")
