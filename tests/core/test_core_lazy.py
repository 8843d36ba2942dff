"""core.lazy: a package's names imported on first use, then kept; others are AttributeErrors."""

import sys
import types

import pytest

from seqtransfer.core.lazy import lazy_getattr


def test_a_lazy_name_is_imported_on_first_use_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("lazy_test_package")
    monkeypatch.setitem(sys.modules, "lazy_test_package", package)
    monkeypatch.delitem(sys.modules, "fractions", raising=False)
    package.__getattr__ = lazy_getattr("lazy_test_package", {"Fraction": "fractions"})
    assert "Fraction" not in vars(package) and "fractions" not in sys.modules
    fraction = package.Fraction
    assert fraction is sys.modules["fractions"].Fraction
    assert vars(package)["Fraction"] is fraction  # kept: the next use does not call __getattr__
    with pytest.raises(AttributeError, match="'lazy_test_package' has no attribute 'Decimal'"):
        _ = package.Decimal
