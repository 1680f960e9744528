"""``--fast`` leaves the costly attribution methods out of the report's default list only."""

from attributions import AttributionMethod
from report.plan import ReportSettings, _methods, default_methods


def test_fast_default_list_drops_costly_methods_but_keeps_given_ones(tmp_path):
    costly = [n for n in default_methods() if AttributionMethod.registry.entry(n).cls.costly]
    assert {"occlusion", "score_cam"} <= set(costly)  # the two many-pass methods are flagged

    fast, _ = _methods(ReportSettings(out_dir=str(tmp_path / "a"), fast=True))
    assert list(fast) == [n for n in default_methods() if n not in costly]

    full, _ = _methods(ReportSettings(out_dir=str(tmp_path / "b")))
    assert list(full) == list(default_methods())

    given, options = _methods(ReportSettings(out_dir=str(tmp_path / "c"), fast=True, methods=["occlusion", "saliency"]))
    assert list(given) == ["occlusion", "saliency"]
    assert options["occlusion"]["stride"] == 4  # the fast profile still applies to a given method
