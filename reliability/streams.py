"""The one registry of random streams: every spawn-key tag and the helpers that turn seeds into
generators.

Scheme
------
A run has one integer ``seed``.  Every random stream of the run is a child of
``SeedSequence(seed)`` named by its spawn key, so a stream depends only on ``(seed, key)``: not on
chunk sizes, worker counts, the order of evaluation or which other streams were drawn.

- Chip ``i`` of a run (``i = 0, 1, ...``) draws from ``SeedSequence(seed, spawn_key=(i,))``
  (:func:`chip_rng`): exactly the ``i``-th child ``SeedSequence(seed).spawn`` would give.
- Every other stream uses a tag in the spawn key far above any chip index (the tags below), so it
  can never coincide with a chip's stream.  A tag is either the whole key (``(tag,)``) or its first
  element, followed by a counter (``(tag, level)``, ``(tag, chunk)``).

The values of the tags are part of every result's reproducibility: changing one changes the numbers
of every run that uses it.  Add a new stream by adding a tag here, never by writing a literal key.

Public helpers: :func:`stream` (any keyed stream), :func:`chip_rng` (a chip's stream),
:func:`as_generator` (``rng`` arguments to a Generator, SPEC 7) and :func:`as_seed` (``rng``
arguments to the integer seed of a keyed run).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reliability.errors import ReliabilityError

__all__ = ["stream", "chip_rng", "as_generator", "as_seed", "SUBSET_CHAINS", "MEAN_SHIFT_IS", "HYBRID_IS",
           "HYBRID_PILOT", "PROJECTED_KEY", "WORSTCASE_RESTART", "WORSTCASE_RANDOM"]

#: subset simulation's Markov chains at level ``l``: key ``(SUBSET_CHAINS, l)``
SUBSET_CHAINS = 2**31 - 1
#: mean-shift importance sampling's proposal draws: key ``(MEAN_SHIFT_IS,)``
MEAN_SHIFT_IS = 2**31 - 2
#: the hybrid's importance-sampling chunk ``c``: key ``(HYBRID_IS, c)``; the projection mixture's fit:
#: key ``(HYBRID_IS, PROJECTED_KEY)``
HYBRID_IS = 2**31 - 3
#: the hybrid's pilot chip ``i`` is chip ``HYBRID_PILOT + i`` (key ``(HYBRID_PILOT + i,)``), above any
#: level-0 chip index of subset simulation (``0 .. N-1``)
HYBRID_PILOT = 10**9
#: second element of the key of the hybrid's projection-mixture fit, above any chunk index
PROJECTED_KEY = 2**20
#: worst-case search: restart ``r``'s random start, key ``(WORSTCASE_RESTART, r)``
WORSTCASE_RESTART = 2**31 - 11
#: worst-case search: random baseline chip ``i``, key ``(WORSTCASE_RANDOM, i)``
WORSTCASE_RANDOM = 2**31 - 12


def stream(seed: int, *key: int) -> np.random.Generator:
    """The generator of the stream ``key`` of a run seeded with ``seed``.

    Parameters
    ----------
    seed : int
        The run's seed.
    *key : int
        The spawn key: a chip index, or a tag of this module followed by counters.

    Returns
    -------
    numpy.random.Generator
        ``Generator(PCG64(SeedSequence(seed, spawn_key=key)))``.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key))))


def chip_rng(seed: int, i: int) -> np.random.Generator:
    """The generator of chip ``i`` for ``seed``: depends on nothing else.

    Parameters
    ----------
    seed : int
        The run's seed.
    i : int
        The chip's index.

    Returns
    -------
    numpy.random.Generator
        ``stream(seed, i)``.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(int(i),))))


def as_generator(rng: Any) -> np.random.Generator:
    """Turn an ``rng`` argument into a Generator (SPEC 7).

    Parameters
    ----------
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        A Generator is returned as is; anything else goes through :func:`numpy.random.default_rng`
        (None: fresh OS entropy).

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    TypeError
        For any other type.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be None, an int seed, a SeedSequence or a numpy Generator; got {type(rng).__name__}.")


def as_seed(rng: Any) -> int:
    """The integer seed of a keyed run from an ``rng`` argument (SPEC 7).

    Keyed runs (chips indexed by ``(seed, i)``) need an integer, not a stream.

    Parameters
    ----------
    rng : None, int or numpy.random.Generator
        A non-negative int passes through unchanged (so ``rng=0`` gives exactly the streams of
        ``seed=0``); a Generator gives one draw ``int(rng.integers(2**63))``; None gives a seed from
        fresh OS entropy.

    Returns
    -------
    int

    Raises
    ------
    ReliabilityError
        For a negative int or another type.
    """
    if isinstance(rng, (bool, np.bool_)):
        raise ReliabilityError(f"rng={rng!r}: must be None, a non-negative int seed or a numpy Generator, "
                               "not a bool.")
    if isinstance(rng, (int, np.integer)):
        if int(rng) < 0:
            raise ReliabilityError(f"rng={int(rng)}: a seed must be a non-negative integer; pass e.g. rng=0.")
        return int(rng)
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**63))
    if rng is None:
        return int(np.random.default_rng().integers(2**63))
    raise ReliabilityError(f"rng: must be None, a non-negative int seed or a numpy Generator; got "
                           f"{type(rng).__name__}.")
