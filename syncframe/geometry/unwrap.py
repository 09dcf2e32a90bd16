"""UV unwrapping with xatlas, isolated in a child process so a crash or a hang in native code
costs the user one clear error line, never the process.

xatlas segfaults on some ordinary closed meshes (an icosphere of 81 920 faces, seen with
xatlas 0.0.11) and is slow on large single charts; the same surfaces cut into pieces of at
most ``PIECE_FACES`` faces unwrap quickly (1.3 M faces in 64 pieces: 2.3 s). So the mesh is cut
into spatially compact pieces (recursive median splits of the face centres along the longest
axis) and every piece is one mesh of one shared atlas; cuts become chart seams, which the texture
fill handles like any other seam. A piece count that still fails is retried once with smaller
pieces.

Run as ``python -m syncframe.geometry.unwrap IN.npz OUT.npz`` by :func:`unwrap_isolated`.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError

PIECE_FACES = 20_000
RETRY_PIECE_FACES = 2_000


def split_faces(centres: np.ndarray, limit: int) -> list[np.ndarray]:
    """Face indices cut into groups of at most ``limit`` faces by recursive median splits of the
    face ``centres: [F, 3]`` along their longest extent."""
    pending, pieces = [np.arange(len(centres))], []
    while pending:
        ids = pending.pop()
        if len(ids) <= limit:
            pieces.append(ids)
            continue
        points = centres[ids]
        axis = int(np.argmax(points.max(0) - points.min(0)))
        order = ids[np.argsort(points[:, axis], kind="stable")]
        half = len(order) // 2
        pending += [order[:half], order[half:]]
    return pieces


def atlas_of_pieces(vertices: np.ndarray, faces: np.ndarray, pieces: list[np.ndarray],
                    resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas on each piece as one mesh of a shared atlas -> (source vertex of every new vertex
    ``[V']``, faces ``[F', 3]`` over the new vertices, UVs ``[V', 2]``); faces keep their order."""
    import xatlas

    atlas = xatlas.Atlas()
    locals_ = []
    for ids in pieces:
        used, local = np.unique(faces[ids], return_inverse=True)
        atlas.add_mesh(vertices[used].astype(np.float32), local.reshape(-1, 3).astype(np.uint32))
        locals_.append(used)
    pack = xatlas.PackOptions()
    pack.resolution = resolution
    pack.padding = max(2, resolution // 256)  # a gutter between charts for the texture dilation
    atlas.generate(pack_options=pack)
    sources, new_faces, uvs, offset = [], np.zeros((len(faces), 3), np.int64), [], 0
    for k, (ids, used) in enumerate(zip(pieces, locals_)):
        vmapping, indices, piece_uv = atlas[k]
        sources.append(used[vmapping])
        new_faces[ids] = indices.astype(np.int64) + offset
        uvs.append(piece_uv)
        offset += len(vmapping)
    return np.concatenate(sources), new_faces, np.concatenate(uvs).astype(np.float64)


def unwrap_isolated(vertices: np.ndarray, faces: np.ndarray, resolution: int = 1024,
                    timeout: float = 300.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """:func:`atlas_of_pieces` in a child process; returns its result and the number of pieces,
    or raises ``ConfigError`` when xatlas crashes or runs past ``timeout`` seconds twice."""
    centres = vertices[faces].mean(axis=1)
    failures = []
    for limit in (PIECE_FACES, RETRY_PIECE_FACES):
        pieces = split_faces(centres, limit)
        with tempfile.TemporaryDirectory(prefix="syncframe-unwrap-") as folder:
            source, result = Path(folder) / "in.npz", Path(folder) / "out.npz"
            piece_of = np.zeros(len(faces), np.int64)
            for k, ids in enumerate(pieces):
                piece_of[ids] = k
            np.savez(source, vertices=vertices, faces=faces, piece=piece_of, resolution=resolution)
            try:
                done = subprocess.run([sys.executable, "-m", "syncframe.geometry.unwrap", str(source), str(result)],
                                      capture_output=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                failures.append(f"ran past {timeout:g} s")
                continue
            if done.returncode == 0 and result.exists():
                with np.load(result) as out:
                    return out["source"], out["faces"], out["uv"], len(pieces)
            failures.append(f"killed by signal {-done.returncode}" if done.returncode < 0
                            else f"failed: {done.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    raise ConfigError(f"the UV unwrapper (xatlas) could not unwrap this mesh ({'; then '.join(failures)}); "
                      "give the mesh UVs (e.g. Blender's Smart UV Project) and run again")


def main(argv: list[str]) -> int:
    source, result = argv
    with np.load(source) as data:
        piece, count = data["piece"], int(data["piece"].max()) + 1
        pieces = [np.flatnonzero(piece == k) for k in range(count)]
        out = atlas_of_pieces(data["vertices"], data["faces"], pieces, int(data["resolution"]))
    np.savez(result, source=out[0], faces=out[1], uv=out[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
