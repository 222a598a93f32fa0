"""Property tests for arcpipe.transforms: exact inverses, board encoding and crop-back.

The reference below (`_board_by_hand`) builds a token board the slow, obvious
way (numpy's own rot90/flip, a Python-level paste), so the vectorised
``encode_boards`` is checked against an independent statement of the rules.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arcpipe import transforms as T

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def grids(draw, max_side: int = 30) -> np.ndarray:
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(0, 10, size=(h, w)).astype(np.uint8)


@st.composite
def perms(draw) -> np.ndarray:
    seed = draw(st.integers(0, 2**32 - 1))
    return T.random_colour_perms(np.random.default_rng(seed), 1)[0]


NUMPY_DIHEDRAL = [
    lambda g: g,
    lambda g: np.rot90(g, 1),
    lambda g: np.rot90(g, 2),
    lambda g: np.rot90(g, 3),
    np.fliplr,
    np.flipud,
    lambda g: g.T,
    lambda g: np.fliplr(np.rot90(g, 1)),
]


def _board_by_hand(grid: np.ndarray, tid: int, perm: np.ndarray, dr: int, dc: int, canvas: int) -> np.ndarray:
    g = NUMPY_DIHEDRAL[tid](perm[grid]) + T.COLOUR_OFFSET
    h, w = g.shape
    board = np.full((canvas, canvas), T.PAD, dtype=np.uint8)
    board[dr : dr + h, dc : dc + w] = g
    if dr + h < canvas:
        board[dr + h, dc : dc + w] = T.EOS
    if dc + w < canvas:
        board[dr : dr + h, dc + w] = T.EOS
    return board.ravel()


@SETTINGS
@given(grids(), st.integers(0, 7))
def test_dihedral_inverse_is_identity(grid, tid):
    moved = T.dihedral(grid, tid)
    assert moved.shape == tuple(int(x) for x in T.transformed_shape(*grid.shape, tid))
    assert np.array_equal(T.inverse_dihedral(moved, tid), grid)
    assert np.array_equal(T.dihedral(T.inverse_dihedral(grid, tid), tid), grid)
    assert np.array_equal(moved, NUMPY_DIHEDRAL[tid](grid))


@SETTINGS
@given(grids(), perms(), st.integers(0, 7))
def test_colour_perm_and_augment_inverse(grid, perm, tid):
    assert perm[0] == 0 and sorted(perm.tolist()) == list(range(10))
    inv = T.invert_perms(perm)
    assert np.array_equal(inv[perm[grid]], grid)
    assert np.array_equal(perm[inv[grid]], grid)
    assert np.array_equal(T.inverse_augment_grid(T.augment_grid(grid, tid, perm), tid, perm), grid)


@SETTINGS
@given(grids(), st.integers(0, 7))
def test_dihedral_source_agrees_with_numpy(grid, tid):
    h, w = grid.shape
    th, tw = (int(x) for x in T.transformed_shape(h, w, tid))
    i, j = np.meshgrid(np.arange(th), np.arange(tw), indexing="ij")
    a, b = T.dihedral_source(tid, i, j, h, w)
    assert np.array_equal(grid[a, b], T.dihedral(grid, tid))
    r0, rs, c0, cs = T.separable_source(tid, h, w)
    assert np.array_equal(grid.ravel()[r0 + rs * i + c0 + cs * j], T.dihedral(grid, tid))


@SETTINGS
@given(st.lists(st.tuples(grids(), st.integers(0, 7), perms(), st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1, max_size=6), st.integers(0, 8), st.data())
def test_encode_boards_matches_by_hand_and_crops_back(items, extra, data):
    """Any canvas >= grid, any translation that fits: board == by-hand board, and crop/inverse recover the grid."""
    canvas = max(max(g.shape) for g, *_ in items) + extra
    flat = np.concatenate([g.ravel() for g, *_ in items])
    offs = np.concatenate([[0], np.cumsum([g.size for g, *_ in items])[:-1]])
    tids = np.array([t for _, t, *_ in items])
    ps = np.stack([p for _, _, p, *_ in items])
    th, tw = T.transformed_shape(np.array([g.shape[0] for g, *_ in items]), np.array([g.shape[1] for g, *_ in items]), tids)
    dr = np.array([u % (canvas - a + 1) for (_, _, _, u, _), a in zip(items, th)])
    dc = np.array([v % (canvas - b + 1) for (_, _, _, _, v), b in zip(items, tw)])
    hs = [g.shape[0] for g, *_ in items]
    ws = [g.shape[1] for g, *_ in items]
    boards = T.encode_boards(flat, offs, hs, ws, tids, ps, dr, dc, canvas)
    assert boards.shape == (len(items), canvas * canvas) and boards.dtype == np.uint8
    for k, (g, t, p, *_) in enumerate(items):
        assert np.array_equal(boards[k], _board_by_hand(g, t, p, dr[k], dc[k], canvas))
        shifted = boards[k].reshape(canvas, canvas)[dr[k] :, dc[k] :]
        padded = np.full((canvas, canvas), T.PAD, np.uint8)
        padded[: shifted.shape[0], : shifted.shape[1]] = shifted
        cropped = T.crop_board(padded.ravel(), canvas)
        assert np.array_equal(cropped, T.augment_grid(g, t, p))
    # Untranslated boards: the vectorised crop + inverse recovers every original grid.
    zero = np.zeros(len(items), np.int64)
    boards0 = T.encode_boards(flat, offs, hs, ws, tids, ps, zero, zero, canvas)
    ch, cw = T.crop_shapes(boards0, canvas)
    assert np.array_equal(ch, th) and np.array_equal(cw, tw)
    back, h0, w0 = T.inverse_boards(boards0, ch, cw, tids, ps, canvas)
    for k, (g, *_) in enumerate(items):
        assert (h0[k], w0[k]) == g.shape
        assert np.array_equal(back[k, : g.shape[0], : g.shape[1]], g)
        assert (back[k, g.shape[0] :] == 255).all() and (back[k, :, g.shape[1] :] == 255).all()


@SETTINGS
@given(grids(max_side=12), perms())
def test_inverse_boards_inverts_every_transform(grid, perm):
    canvas = 12
    tids = np.arange(8)
    ps = np.repeat(perm[None], 8, axis=0)
    n = len(tids)
    h, w = grid.shape
    boards = T.encode_boards(grid.ravel(), np.zeros(n, np.int64), [h] * n, [w] * n, tids, ps, np.zeros(n), np.zeros(n), canvas)
    back, h0, w0 = T.inverse_boards(boards, *T.crop_shapes(boards, canvas), tids, ps, canvas)
    assert (h0 == h).all() and (w0 == w).all()
    assert (back[:, :h, :w] == grid[None]).all()


def test_missing_output_board_is_all_pad():
    grid = np.arange(6, dtype=np.uint8).reshape(2, 3)
    ident = np.arange(10, dtype=np.uint8)[None].repeat(2, axis=0)
    boards = T.encode_boards(grid.ravel(), [-1, 0], [0, 2], [0, 3], [3, 3], ident, [4, 0], [5, 0], 5)
    assert (boards[0] == T.PAD).all()
    assert (boards[1] != T.PAD).any()


def test_encode_grid_rejects_what_does_not_fit():
    with pytest.raises(ValueError):
        T.encode_grid(np.zeros((4, 4), np.uint8), canvas=5, dr=2)


def test_full_canvas_grid_has_no_eos():
    grid = np.random.default_rng(0).integers(0, 10, (30, 30)).astype(np.uint8)
    board = T.encode_grid(grid, 30)
    assert (board >= T.COLOUR_OFFSET).all()
    assert np.array_equal(T.crop_board(board, 30), grid)
