"""Grid transforms, their exact inverses, and the grid <-> token board encoding.

Everything here works on whole batches of variants at once through index
arithmetic (where does target cell (i, j) read from?), so the augment, train,
infer and vote stages never loop over cells or variants in Python. The same
``dihedral_source`` map serves the forward direction (materialising training
boards) and the backward one (mapping predictions back before voting), which
is what keeps the two exactly consistent.

Conventions (DESIGN.md): PAD=0, EOS=1, colour c -> token c+2; dihedral ids
0..7 = identity, rot90, rot180, rot270 (numpy's counter-clockwise
``rot90``), flip-lr, flip-ud, transpose, anti-transpose.
"""

from __future__ import annotations

import numpy as np

PAD = 0
EOS = 1
COLOUR_OFFSET = 2
VOCAB_SIZE = 12
NUM_COLOURS = 10
MAX_SIDE = 30
NUM_DIHEDRAL = 8

#: ``DIHEDRAL_INVERSE[t]`` undoes transform ``t``: 1 and 3 swap, the rest are involutions.
DIHEDRAL_INVERSE = np.array([0, 3, 2, 1, 4, 5, 6, 7], dtype=np.int8)
#: Transforms that swap height and width.
SWAPS_AXES = np.array([False, True, False, True, False, False, True, True])
DIHEDRAL_NAMES = ("identity", "rot90", "rot180", "rot270", "flip_lr", "flip_ud", "transpose", "anti_transpose")


def dihedral(grid: np.ndarray, tid: int) -> np.ndarray:
    """Apply dihedral transform ``tid`` to one 2-D grid (numpy views, then a copy)."""
    tid = int(tid)
    if tid == 0:
        out = grid
    elif tid in (1, 2, 3):
        out = np.rot90(grid, k=tid)
    elif tid == 4:
        out = np.fliplr(grid)
    elif tid == 5:
        out = np.flipud(grid)
    elif tid == 6:
        out = grid.T
    elif tid == 7:
        out = np.fliplr(np.rot90(grid, k=1))
    else:
        raise ValueError(f"dihedral transform id must be 0..7, got {tid}")
    return np.ascontiguousarray(out)


def inverse_dihedral(grid: np.ndarray, tid: int) -> np.ndarray:
    return dihedral(grid, int(DIHEDRAL_INVERSE[int(tid)]))


def transformed_shape(h, w, tid):
    """Shape of an (h, w) grid after transform ``tid``; broadcasts over arrays."""
    swap = SWAPS_AXES[np.asarray(tid, dtype=np.int64)]
    return np.where(swap, w, h), np.where(swap, h, w)


def dihedral_source(tid, i, j, h, w):
    """Source coordinates for cell (i, j) of ``dihedral(S, tid)`` where S is (h, w).

    All arguments broadcast against each other, so one call answers for a
    whole batch of boards with a different transform and shape per board.
    Cells outside the transformed grid give meaningless (but in-range after
    clipping by the caller) coordinates; callers mask them.
    """
    tid = np.asarray(tid)
    ri, rj = h - 1 - i, w - 1 - i  # reversed row index, reversed "column from i"
    a = np.select(
        [tid == 0, tid == 1, tid == 2, tid == 3, tid == 4, tid == 5, tid == 6],
        [i, j, h - 1 - i, h - 1 - j, i, ri, j],
        default=h - 1 - j,
    )
    b = np.select(
        [tid == 0, tid == 1, tid == 2, tid == 3, tid == 4, tid == 5, tid == 6],
        [j, rj, w - 1 - j, i, w - 1 - j, j, i],
        default=rj,
    )
    return a, b


def random_colour_perms(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` colour permutations as (n, 10) uint8 lookup tables with black (0) fixed."""
    keys = rng.random((n, NUM_COLOURS - 1))
    perms = np.empty((n, NUM_COLOURS), dtype=np.uint8)
    perms[:, 0] = 0
    perms[:, 1:] = np.argsort(keys, axis=1) + 1
    return perms


def invert_perms(perms: np.ndarray) -> np.ndarray:
    """Inverse lookup tables for (..., 10) permutations: ``inv[perm[c]] = c``."""
    perms = np.asarray(perms)
    inv = np.empty_like(perms)
    np.put_along_axis(inv, perms.astype(np.int64), np.broadcast_to(np.arange(perms.shape[-1], dtype=perms.dtype), perms.shape), axis=-1)
    return inv


def augment_grid(grid: np.ndarray, tid: int, perm: np.ndarray) -> np.ndarray:
    """Colour permutation, then dihedral transform (the reference's order)."""
    return dihedral(np.asarray(perm, dtype=np.uint8)[grid], tid)


def inverse_augment_grid(grid: np.ndarray, tid: int, perm: np.ndarray) -> np.ndarray:
    return invert_perms(np.asarray(perm, dtype=np.uint8))[inverse_dihedral(grid, tid)]


#: Per-transform coefficients of the separable source index used by ``encode_boards``.
#: For ``dihedral(S, t)`` with S of shape (h, w), target cell (i, j) reads flat
#: index ``R(i) + C(j)`` of S, where R(i) = r0 + rs*i and C(j) = c0 + cs*j.
#: Each coefficient is a combination of the basis (1, w, (h-1)*w, w-1) with the
#: integer weights below (rows: transform id; columns: basis term).
_R0 = np.array([[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=np.int64)
_RS = np.array([[0, 1, 0, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, -1, 0, 0], [1, 0, 0, 0], [-1, 0, 0, 0]], dtype=np.int64)
_C0 = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]], dtype=np.int64)
_CS = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [-1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, -1, 0, 0]], dtype=np.int64)


def separable_source(tid, h, w) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(r0, rs, c0, cs) per board so that ``dihedral(S, tid)[i, j] == S.flat[r0 + rs*i + c0 + cs*j]``.

    Every dihedral transform reads row-only and column-only parts that add
    up, so a whole board's gather index is one (canvas, 1) + (1, canvas)
    broadcast instead of a per-cell ``np.select`` over eight cases. That is
    what makes ``encode_boards`` fast; ``dihedral_source`` stays the readable
    statement of the same map (tests check that the two agree).
    """
    tid = np.asarray(tid, dtype=np.int64)
    h = np.asarray(h, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    basis = np.stack(np.broadcast_arrays(np.ones_like(h * w), w, (h - 1) * w, w - 1), axis=-1)
    return tuple((tab[tid] * basis).sum(axis=-1) for tab in (_R0, _RS, _C0, _CS))  # type: ignore[return-value]


def encode_boards(
    flat: np.ndarray,
    offset: np.ndarray,
    h: np.ndarray,
    w: np.ndarray,
    tid: np.ndarray,
    perm: np.ndarray,
    dr: np.ndarray,
    dc: np.ndarray,
    canvas: int,
) -> np.ndarray:
    """Materialise N augmented grids as token boards, shape (N, canvas*canvas) uint8.

    Grid n is ``flat[offset[n] : offset[n] + h[n]*w[n]]`` (row-major, colours
    0..9, original frame). It is colour-mapped by ``perm[n]`` (10-entry
    table), transformed by dihedral ``tid[n]``, and placed with its top-left
    corner at (dr[n], dc[n]); EOS marks the row below it and the column right
    of it (not the corner), as the reference builder does. ``offset < 0``
    means "no grid": the board is all PAD (test inputs' unknown outputs).

    Speed (it runs per training batch): the gather index and the
    inside/EOS/PAD class of each cell are built from per-row and per-column
    parts (``separable_source``) with one broadcast each, and one per-board
    lookup table turns (colour or class) codes into tokens.
    """
    flat = np.asarray(flat, dtype=np.uint8)
    offset = np.asarray(offset, dtype=np.int64).reshape(-1)
    n = len(offset)
    present = offset >= 0
    h = np.where(present, np.asarray(h, dtype=np.int64).reshape(-1), 0)
    w = np.where(present, np.asarray(w, dtype=np.int64).reshape(-1), 0)
    tid = np.asarray(tid, dtype=np.int64).reshape(-1)
    th, tw = transformed_shape(h, w, tid)
    r0, rs, c0, cs = separable_source(tid, h, w)
    ar = np.arange(canvas, dtype=np.int64)[None, :]
    i = ar - np.asarray(dr, dtype=np.int64).reshape(-1, 1)  # (n, canvas) row inside the grid
    j = ar - np.asarray(dc, dtype=np.int64).reshape(-1, 1)
    row_in = (i >= 0) & (i < th[:, None])
    col_in = (j >= 0) & (j < tw[:, None])
    # R(i) and C(j) are each non-negative and their sum stays inside the grid,
    # so zeroing the out-of-grid parts keeps every index valid without a mask.
    base = np.where(present, offset, 0)[:, None]
    rpart = np.where(row_in, base + r0[:, None] + rs[:, None] * i, base)
    cpart = np.where(col_in, c0[:, None] + cs[:, None] * j, 0)
    src = (rpart[:, :, None] + cpart[:, None, :]).reshape(n, -1)
    colours = flat[src] if len(flat) else np.zeros(src.shape, dtype=np.uint8)
    # Background code per cell from per-row and per-column classes (in the
    # grid 0, EOS line 1, beyond 4): the sum is 0 inside, 1 on an EOS cell,
    # 2 at the EOS corner, >= 4 elsewhere. Codes 10 + sum index a per-board
    # table whose entries 0..9 are the permuted colour tokens, 11 is EOS and
    # everything else PAD.
    rclass = np.where(row_in, 0, np.where(i == th[:, None], 1, 4)).astype(np.uint8)
    cclass = np.where(col_in, 0, np.where(j == tw[:, None], 1, 4)).astype(np.uint8)
    bg = (rclass[:, :, None] + cclass[:, None, :]).reshape(n, -1)
    codes = np.where(bg == 0, colours, bg + np.uint8(NUM_COLOURS))
    width = NUM_COLOURS + 9
    lut = np.full((n, width), PAD, dtype=np.uint8)
    lut[:, :NUM_COLOURS] = np.asarray(perm, dtype=np.uint8).reshape(n, NUM_COLOURS) + np.uint8(COLOUR_OFFSET)
    lut[:, NUM_COLOURS + 1] = EOS
    rows = np.arange(n, dtype=np.intp)[:, None] * width
    return lut.reshape(-1)[rows + codes]


def crop_shapes(boards: np.ndarray, canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) of the grid each predicted board holds, read from its top-left corner.

    Same rule as the reference's ``_crop``: walk down the rows keeping the
    running width of leading colour tokens; the answer is the rectangle of
    largest area (first one on ties). A board whose first cell is not a
    colour gives (0, 0): an empty, always-wrong answer.
    """
    b = np.asarray(boards).reshape(-1, canvas, canvas)
    colour = (b >= COLOUR_OFFSET) & (b < COLOUR_OFFSET + NUM_COLOURS)
    run = np.where(colour.all(axis=2), canvas, np.argmin(colour, axis=2))
    width = np.minimum.accumulate(run, axis=1)
    area = width * np.arange(1, canvas + 1)[None, :]
    best = np.argmax(area, axis=1)
    ok = area[np.arange(len(b)), best] > 0
    return np.where(ok, best + 1, 0), np.where(ok, width[np.arange(len(b)), best], 0)


def crop_board(board: np.ndarray, canvas: int) -> np.ndarray:
    """The colour grid (values 0..9) held by one token board."""
    (h,), (w,) = crop_shapes(board[None], canvas)
    return (np.asarray(board).reshape(canvas, canvas)[:h, :w] - COLOUR_OFFSET).astype(np.uint8)


def encode_grid(grid: np.ndarray, canvas: int = MAX_SIDE, dr: int = 0, dc: int = 0) -> np.ndarray:
    """One untransformed grid as a flat token board (convenience over ``encode_boards``)."""
    grid = np.asarray(grid, dtype=np.uint8)
    h, w = grid.shape
    if dr + h > canvas or dc + w > canvas:
        raise ValueError(f"grid {h}x{w} at ({dr},{dc}) does not fit a {canvas}x{canvas} canvas")
    ident = np.arange(NUM_COLOURS, dtype=np.uint8)[None]
    return encode_boards(grid.ravel(), [0], [h], [w], [0], ident, [dr], [dc], canvas)[0]


def inverse_boards(
    boards: np.ndarray, h: np.ndarray, w: np.ndarray, tid: np.ndarray, perm: np.ndarray, canvas: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map N predicted boards (variant frame, grid at top-left) back to the original frame.

    ``h, w`` are the cropped prediction shapes (``crop_shapes``), ``tid`` and
    ``perm`` the variant's forward transform. Returns (grids, h0, w0): grids is
    (N, canvas, canvas) uint8 colours in the original frame at top-left with
    255 outside the answer, so equal answers compare equal row by row.
    """
    b = np.asarray(boards).reshape(-1, canvas, canvas)
    n = len(b)
    h = np.asarray(h, dtype=np.int64)[:, None, None]
    w = np.asarray(w, dtype=np.int64)[:, None, None]
    inv_tid = DIHEDRAL_INVERSE[np.asarray(tid, dtype=np.int64)].astype(np.int64)[:, None, None]
    h0, w0 = transformed_shape(h, w, inv_tid)
    i = np.arange(canvas, dtype=np.int64)[None, :, None]
    j = np.arange(canvas, dtype=np.int64)[None, None, :]
    inside = (i < h0) & (j < w0)
    a, bb = dihedral_source(inv_tid, i, j, h, w)
    flat_idx = np.where(inside, a * canvas + bb, 0)
    tokens = np.take_along_axis(b.reshape(n, -1), flat_idx.reshape(n, -1), axis=1).reshape(n, canvas, canvas)
    inv = invert_perms(np.asarray(perm, dtype=np.uint8).reshape(n, NUM_COLOURS))
    lut = np.full((n, 256), 255, dtype=np.uint8)
    lut[:, COLOUR_OFFSET : COLOUR_OFFSET + NUM_COLOURS] = inv
    colours = np.take_along_axis(lut, tokens.reshape(n, -1).astype(np.int64), axis=1).reshape(n, canvas, canvas)
    grids = np.where(inside, colours, np.uint8(255)).astype(np.uint8)
    return grids, h0[:, 0, 0], w0[:, 0, 0]
