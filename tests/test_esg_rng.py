"""The ESG's counter-based random numbers: Philox4x32-10 and the samplers built on it."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from livecalc.kernels.esg_rng import (
    noncentral_chisquare,
    normal_pair,
    normal_pair_numpy,
    philox4x32,
    philox4x32_numpy,
    seed_key,
    uniform_pair,
)

U32 = st.integers(min_value=0, max_value=2**32 - 1)


def _u64(*values: int) -> list[np.uint64]:
    return [np.uint64(v) for v in values]


class TestPhilox:
    def test_known_answer_zero(self) -> None:
        """Counter and key all zero give Random123's published philox4x32_10 output."""

        words = philox4x32(*_u64(0, 0, 0, 0, 0, 0))

        assert [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8] == [int(w) for w in words]

    def test_known_answer_all_ones(self) -> None:
        """Counter and key all 0xffffffff give Random123's published output."""

        words = philox4x32(*_u64(*[0xFFFFFFFF] * 6))

        assert [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD] == [int(w) for w in words]

    def test_known_answer_pi_digits(self) -> None:
        """The digits-of-pi counter and key give Random123's published output, in numpy too."""
        counter = (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344)
        key = (0xA4093822, 0x299F31D0)
        expected = [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]

        numba_words = [int(w) for w in philox4x32(*_u64(*counter, *key))]
        numpy_words = philox4x32_numpy(
            *[np.array([c], dtype=np.uint64) for c in counter], key[0], key[1]
        )

        assert expected == numba_words
        assert expected == [int(w[0]) for w in numpy_words]

    @settings(max_examples=30, deadline=None)
    @given(U32, U32, U32, U32, U32, U32)
    def test_numba_matches_numpy(
        self, c0: int, c1: int, c2: int, c3: int, k0: int, k1: int
    ) -> None:
        """The numba and numpy implementations agree on any counter and key."""
        arrays = [np.array([c], dtype=np.uint64) for c in (c0, c1, c2, c3)]

        expected = [int(w[0]) for w in philox4x32_numpy(*arrays, k0, k1)]
        actual = [int(w) for w in philox4x32(*_u64(c0, c1, c2, c3, k0, k1))]

        assert expected == actual


class TestUniformsAndNormals:
    @settings(max_examples=30, deadline=None)
    @given(U32, U32, U32, U32)
    def test_uniforms_in_unit_interval(self, step: int, slot: int, outer: int, draw: int) -> None:
        """Uniforms lie in [0, 1)."""
        k0, k1 = _u64(*seed_key(1))

        u1, u2 = uniform_pair(step, slot, outer, draw, k0, k1)

        assert (True, True) == (0.0 <= u1 < 1.0, 0.0 <= u2 < 1.0)

    def test_normals_have_unit_moments(self) -> None:
        """40,000 normals from consecutive counters have mean 0, variance 1, no correlation."""
        k0, k1 = seed_key(5)
        steps = np.arange(20_000, dtype=np.uint64)
        zero = np.zeros_like(steps)
        z1, z2 = normal_pair_numpy(steps, zero + np.uint64(1), zero, zero, k0, k1)
        both = np.concatenate([z1, z2])
        se = 1.0 / math.sqrt(len(both))

        assert (True, True, True) == (
            abs(both.mean()) < 4 * se,
            abs(both.var() - 1.0) < 4 * math.sqrt(2.0) * se,
            abs(np.corrcoef(z1, z2)[0, 1]) < 4 / math.sqrt(len(z1)),
        )

    def test_numba_normals_match_numpy(self) -> None:
        """The numba Box-Muller pair equals the numpy reference's for the same counter."""
        k0, k1 = seed_key(9)
        one = np.array([1], dtype=np.uint64)

        expected = [
            float(z[0]) for z in normal_pair_numpy(one * 7, one * 3, one * 2, one * 0, k0, k1)
        ]
        actual = list(normal_pair(7, 3, 2, 0, np.uint64(k0), np.uint64(k1)))

        assert np.allclose(expected, actual, rtol=1e-14, atol=0.0)

    def test_seed_key_depends_on_seed(self) -> None:
        """Different seeds give different keys; the same seed the same key."""

        keys = [seed_key(s) for s in (0, 1, 2, 0)]

        assert (3, keys[0]) == (len(set(keys)), keys[3])


class TestNoncentralChisquare:
    def _sample(self, df: float, nonc: float, n: int = 40_000) -> np.ndarray:
        k0, k1 = _u64(*seed_key(11))
        return np.array([noncentral_chisquare(df, nonc, i, 1, 0, k0, k1) for i in range(n)])

    def _assert_moments(self, df: float, nonc: float) -> None:
        x = self._sample(df, nonc)
        mean, var = df + nonc, 2.0 * (df + 2.0 * nonc)
        se_mean = math.sqrt(var / len(x))
        # The sample variance's error needs the fourth central moment: cumulant 48 (df + 4 nonc)
        # plus 3 var**2.
        m4 = 48.0 * (df + 4.0 * nonc) + 3.0 * var * var
        se_var = math.sqrt((m4 - var * var) / len(x))

        assert (True, True) == (
            abs(x.mean() - mean) < 4 * se_mean,
            abs(x.var() - var) < 4 * se_var,
        )

    def test_moments_above_one_degree_of_freedom(self) -> None:
        """For df > 1 (normal plus gamma) the mean is df + nonc, the variance 2(df + 2 nonc)."""

        self._assert_moments(4.8, 3.0)

    def test_moments_small_df_small_poisson_mean(self) -> None:
        """For df <= 1 and a small non-centrality (Poisson by inversion) the moments hold."""

        self._assert_moments(0.6, 4.0)

    def test_moments_small_df_large_poisson_mean(self) -> None:
        """For df <= 1 and a large non-centrality (Poisson by PTRS) the moments hold."""

        self._assert_moments(0.6, 80.0)

    def test_draws_are_positive(self) -> None:
        """Draws are positive even with no non-centrality and few degrees of freedom."""

        x = self._sample(0.3, 0.0, 5_000)

        assert bool(np.all(x > 0.0))
