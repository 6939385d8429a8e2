"""The top-level package exports the public names of DESIGN.md, sorted and complete."""

from __future__ import annotations

import livecalc


class TestPublicApi:
    def test_all_is_sorted(self) -> None:
        """__all__ is sorted, constants (upper case) first as ruff sorts them."""

        names = list(livecalc.__all__)

        assert sorted(names, key=lambda n: (not n.isupper(), n)) == names

    def test_all_names_exist(self) -> None:
        """Every name in __all__ is importable from the package."""

        missing = [n for n in livecalc.__all__ if not hasattr(livecalc, n)]

        assert [] == missing

    def test_public_module_names_are_exported(self) -> None:
        """Every public class or function defined at the top level is listed in __all__."""

        public = {
            n
            for n, v in vars(livecalc).items()
            if not n.startswith("_") and getattr(v, "__module__", "").startswith("livecalc")
        }

        assert set() == public - set(livecalc.__all__)
