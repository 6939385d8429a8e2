"""Counter-based random numbers for the ESG: Philox4x32-10, in numba and in plain numpy.

Every random number the ESG draws is a pure function of the seed's key and a counter
``(step, slot, outer_id, draw)``: the year (or sub-step) index, the path slot within an outer
path (0 for the outer real-world segment, ``inner_id + 1`` for an inner path), the outer path and
a draw index within that cell. Nothing carries state from one cell to the next, so the scenarios
are identical whatever the chunking, the thread count or the executor, and any outer path can be
generated on its own. Philox4x32-10 is the counter-based generator of Salmon et al., "Parallel
random numbers: as easy as 1, 2, 3" (SC'11, the Random123 library); it passes TestU01's
BigCrush for every key, and ``tests/test_esg_rng.py`` pins its published known-answer vectors.

One Philox call gives four 32-bit words; two words make one 53-bit uniform (numpy's own
construction), so one call gives two uniforms, and Box-Muller turns them into two independent
standard normals: exactly what one Gaussian short-rate step needs.

The non-central chi-square sampler used by CIR's exact transition is here too: for ``df > 1`` it
is ``(Z + sqrt(nonc))**2 + chi2(df - 1)`` (a normal plus a gamma, Marsaglia-Tsang, one Philox
call per attempt); for
``df <= 1`` the Poisson mixture ``chi2(df + 2N)``, ``N ~ Poisson(nonc / 2)`` (inversion below a
mean of 10, Hörmann's PTRS above).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

__all__ = [
    "noncentral_chisquare",
    "normal_pair",
    "normal_pair_numpy",
    "philox4x32",
    "philox4x32_numpy",
    "seed_key",
    "uniform_pair",
    "uniform_pair_numpy",
]

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_SHIFT5 = np.uint64(5)
_SHIFT6 = np.uint64(6)
_TWO26 = 67108864.0
_TWO53 = 9007199254740992.0
_TWO_M32 = 1.0 / 4294967296.0
_TWO_PI = 2.0 * math.pi

U64Array = npt.NDArray[np.uint64]


def seed_key(seed: int) -> tuple[int, int]:
    """The 64-bit Philox key (two 32-bit words) that a user's integer seed stands for.

    numpy's SeedSequence hashes the seed, so nearby seeds (0, 1, 2) give unrelated keys.
    """
    words = np.random.SeedSequence(seed).generate_state(2, np.uint32)
    return int(words[0]), int(words[1])


@numba.njit(cache=True, inline="always")
def philox4x32(
    c0: np.uint64, c1: np.uint64, c2: np.uint64, c3: np.uint64, k0: np.uint64, k1: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    """Philox4x32-10 of counter (c0..c3) under key (k0, k1); every value a 32-bit word."""
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        n0 = (p1 >> _SHIFT32) ^ c1 ^ k0
        n2 = (p0 >> _SHIFT32) ^ c3 ^ k1
        c1 = p1 & _MASK32
        c3 = p0 & _MASK32
        c0 = n0
        c2 = n2
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


@numba.njit(cache=True, inline="always")
def uniform_pair(
    step: int, slot: int, outer: int, draw: int, k0: np.uint64, k1: np.uint64
) -> tuple[float, float]:
    """Two independent uniforms on [0, 1) for one cell and draw index (53 bits each)."""
    w0, w1, w2, w3 = philox4x32(
        np.uint64(step), np.uint64(slot), np.uint64(outer), np.uint64(draw), k0, k1
    )
    u1 = (float(w0 >> _SHIFT5) * _TWO26 + float(w1 >> _SHIFT6)) / _TWO53
    u2 = (float(w2 >> _SHIFT5) * _TWO26 + float(w3 >> _SHIFT6)) / _TWO53
    return u1, u2


@numba.njit(cache=True, inline="always")
def normal_pair(
    step: int, slot: int, outer: int, draw: int, k0: np.uint64, k1: np.uint64
) -> tuple[float, float]:
    """Two independent standard normals for one cell (Box-Muller on one Philox call)."""
    u1, u2 = uniform_pair(step, slot, outer, draw, k0, k1)
    # 1 - u1 lies in (0, 1], so the logarithm is finite.
    radius = math.sqrt(-2.0 * math.log(1.0 - u1))
    angle = _TWO_PI * u2
    return radius * math.cos(angle), radius * math.sin(angle)


@numba.njit(cache=True, inline="always")
def _normal_and_uniform(
    step: int, slot: int, outer: int, draw: int, k0: np.uint64, k1: np.uint64
) -> tuple[float, float]:
    """One standard normal and one uniform on (0, 1) from a single Philox call.

    The normal's radius uses a 53-bit uniform (words 0 and 1), its angle word 2; the uniform is
    word 3 alone. 32 bits are plenty for an angle and for a rejection test, and one call per
    rejection-sampler attempt halves the cost of CIR's draws.
    """
    w0, w1, w2, w3 = philox4x32(
        np.uint64(step), np.uint64(slot), np.uint64(outer), np.uint64(draw), k0, k1
    )
    u1 = (float(w0 >> _SHIFT5) * _TWO26 + float(w1 >> _SHIFT6)) / _TWO53
    radius = math.sqrt(-2.0 * math.log(1.0 - u1))
    normal = radius * math.cos(_TWO_PI * float(w2) * _TWO_M32)
    return normal, (float(w3) + 0.5) * _TWO_M32


@numba.njit(cache=True)
def _standard_gamma(
    shape: float,
    boost_uniform: float,
    step: int,
    slot: int,
    outer: int,
    draw: int,
    k0: np.uint64,
    k1: np.uint64,
) -> float:
    """A Gamma(shape, 1) draw (Marsaglia-Tsang) from draws ``draw, draw + 1, ...`` of a cell.

    ``boost_uniform`` (on (0, 1)) is used only when ``shape < 1``.
    """
    boost = 1.0
    if shape < 1.0:
        # G(shape) = G(shape + 1) * U**(1/shape) keeps the squeeze method valid below one.
        boost = boost_uniform ** (1.0 / shape)
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        z, u = _normal_and_uniform(step, slot, outer, draw, k0, k1)
        draw += 1
        v = 1.0 + c * z
        if v <= 0.0:
            continue
        v = v * v * v
        if math.log(u) < 0.5 * z * z + d - d * v + d * math.log(v):
            return boost * d * v


@numba.njit(cache=True)
def _poisson(
    mean: float, step: int, slot: int, outer: int, draw: int, k0: np.uint64, k1: np.uint64
) -> tuple[int, int]:
    """A Poisson(mean) draw and the next free draw index of the cell."""
    if mean < 10.0:
        # Inversion by sequential search: a handful of steps for a small mean.
        u, _ = uniform_pair(step, slot, outer, draw, k0, k1)
        draw += 1
        k = 0
        p = math.exp(-mean)
        cdf = p
        while u > cdf and k < 1000:
            k += 1
            p *= mean / k
            cdf += p
        return k, draw
    # PTRS, W. Hörmann (1993), "The transformed rejection method for generating Poisson
    # random variables"; the algorithm numpy uses for large means.
    slam = math.sqrt(mean)
    loglam = math.log(mean)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u, v = uniform_pair(step, slot, outer, draw, k0, k1)
        draw += 1
        u -= 0.5
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + mean + 0.43)
        if us >= 0.07 and v <= vr:
            return int(k), draw
        if k < 0.0 or (us < 0.013 and v > us):
            continue
        lhs = math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b)
        if lhs <= -mean + k * loglam - math.lgamma(k + 1.0):
            return int(k), draw


@numba.njit(cache=True)
def noncentral_chisquare(
    df: float, nonc: float, step: int, slot: int, outer: int, k0: np.uint64, k1: np.uint64
) -> float:
    """One non-central chi-square draw with ``df`` degrees of freedom and non-centrality."""
    if df > 1.0:
        z, u = _normal_and_uniform(step, slot, outer, 0, k0, k1)
        shifted = z + math.sqrt(nonc)
        gamma = _standard_gamma(0.5 * (df - 1.0), u, step, slot, outer, 1, k0, k1)
        return shifted * shifted + 2.0 * gamma
    n, draw = _poisson(0.5 * nonc, step, slot, outer, 0, k0, k1)
    _, u = _normal_and_uniform(step, slot, outer, draw, k0, k1)
    gamma = _standard_gamma(0.5 * df + n, u, step, slot, outer, draw + 1, k0, k1)
    return 2.0 * gamma


def philox4x32_numpy(
    c0: U64Array, c1: U64Array, c2: U64Array, c3: U64Array, k0: int, k1: int
) -> tuple[U64Array, U64Array, U64Array, U64Array]:
    """Philox4x32-10 over arrays of counters: the plain-numpy reference of ``philox4x32``."""
    key0 = np.uint64(k0)
    key1 = np.uint64(k1)
    for _ in range(10):
        # Both factors are below 2**32, so the uint64 product never wraps.
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (
            (p1 >> _SHIFT32) ^ c1 ^ key0,
            p1 & _MASK32,
            (p0 >> _SHIFT32) ^ c3 ^ key1,
            p0 & _MASK32,
        )
        key0 = (key0 + _W0) & _MASK32
        key1 = (key1 + _W1) & _MASK32
    return c0, c1, c2, c3


def uniform_pair_numpy(
    step: U64Array, slot: U64Array, outer: U64Array, draw: U64Array, k0: int, k1: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The plain-numpy reference of ``uniform_pair`` over arrays of counters."""
    w0, w1, w2, w3 = philox4x32_numpy(step, slot, outer, draw, k0, k1)
    u1 = ((w0 >> _SHIFT5).astype(np.float64) * _TWO26 + (w1 >> _SHIFT6)) / _TWO53
    u2 = ((w2 >> _SHIFT5).astype(np.float64) * _TWO26 + (w3 >> _SHIFT6)) / _TWO53
    return u1, u2


def normal_pair_numpy(
    step: U64Array, slot: U64Array, outer: U64Array, draw: U64Array, k0: int, k1: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The plain-numpy reference of ``normal_pair`` over arrays of counters."""
    u1, u2 = uniform_pair_numpy(step, slot, outer, draw, k0, k1)
    radius = np.sqrt(-2.0 * np.log(1.0 - u1))
    angle = _TWO_PI * u2
    return radius * np.cos(angle), radius * np.sin(angle)
