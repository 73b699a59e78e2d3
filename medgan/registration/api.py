"""Register files and folders of patients, write the outputs atomically, and the QA report."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medgan.errors import InputError, MedganError
from medgan.io import Volume, read_volume
from medgan.io.writers import FILE, OutputPlan, atomic_path, check_png, plan_outputs
from medgan.registration.elastix import RegistrationOptions, RegistrationResult, register


def _views(arr: np.ndarray, centre):
    """Axial, coronal and sagittal slices through ``centre`` of an LPS array, in the radiological display: the
    patient's right on the image's left, anterior (axial) and superior (coronal, sagittal) at the top."""
    z, y, x = centre
    return [("axial", arr[z]), ("coronal", arr[:, y, :][::-1]), ("sagittal", arr[:, :, x][::-1])]


#: the letters on each view's edges (left, right, top, bottom) once the arrays are in LPS (``_views``)
EDGES = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}


def _label_edges(ax, plane: str) -> None:
    left, right, top, bottom = EDGES[plane]
    style = dict(transform=ax.transAxes, color="yellow", fontsize=8, fontweight="bold", ha="center", va="center")
    for x, y, letter in ((0.04, 0.5, left), (0.96, 0.5, right), (0.5, 0.94, top), (0.5, 0.06, bottom)):
        ax.text(x, y, letter, **style)


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """2D checkerboard of two same-size slices (``tiles`` squares along the longer side)."""
    h, w = a.shape
    step = max(1, max(h, w) // tiles)
    yy, xx = np.indices((h, w))
    return np.where(((yy // step) + (xx // step)) % 2 == 0, a, b)


def qa_figure(path: Path, result: RegistrationResult, fixed: Volume, window=(-400.0, 600.0)) -> Path:
    """Rows axial / coronal / sagittal; columns: CBCT | registered CT | checkerboard | overlay | Jacobian det.

    Every array is first reoriented to LPS (the fixed image's grid, whatever order its file stores), so each
    view is drawn the right way up in the radiological convention, with orientation letters on its edges."""
    from medgan.io.orientation import to_orientation
    from medgan.utils.figures import _plt, _save

    plt = _plt()
    fixed, plan = to_orientation(fixed)

    def canon(a: np.ndarray) -> np.ndarray:
        return np.asarray(a) if plan.identity else plan.apply(np.asarray(a))

    fov = canon(result.fov.array) > 0
    centre = tuple(int(round(c)) for c in np.argwhere(fov).mean(axis=0)) if fov.any() else \
        tuple(s // 2 for s in fixed.shape)
    sx, sy, sz = fixed.spacing
    cb, ct = np.asarray(fixed.array, np.float32), canon(result.moved.array).astype(np.float32)
    det = None if result.jacobian is None else canon(result.jacobian)
    n_cols = 5 if det is not None else 4
    # row heights follow each plane's physical aspect (clamped), so thin slabs leave no blank rows
    nz, ny, nx = fixed.shape
    ratios = [max(0.25, min(1.5, r)) for r in ((ny * sy) / (nx * sx), (nz * sz) / (nx * sx), (nz * sz) / (ny * sy))]
    fig = plt.figure(figsize=(3.0 * n_cols, 3.0 * sum(ratios) + 0.8))
    grid = fig.add_gridspec(3, n_cols, height_ratios=ratios)
    axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(n_cols)] for r in range(3)])

    def norm(a):
        return np.clip((a - window[0]) / (window[1] - window[0]), 0, 1)

    for row, ((plane, a), (_, b), (_, f)) in enumerate(zip(_views(cb, centre), _views(ct, centre),
                                                          _views(fov.astype(np.float32), centre), strict=True)):
        panels = [("CBCT (fixed)", a, "gray"), ("CT registered", b, "gray"),
                  ("checkerboard", checkerboard(a, b), "gray")]
        for col, (title, img, cmap) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(img, cmap=cmap, vmin=window[0], vmax=window[1], aspect="auto")
            ax.contour(f, levels=[0.5], colors="yellow", linewidths=0.6)
            if row == 0:
                ax.set_title(title)
        # overlay: CBCT in magenta, CT in green; grey where they agree
        rgb = np.stack([norm(a), norm(b), norm(a)], axis=-1)
        axes[row, 3].imshow(rgb, aspect="auto")
        if row == 0:
            axes[row, 3].set_title("overlay (CBCT magenta, CT green)")
        if det is not None:
            _, d = _views(det, centre)[row]
            im = axes[row, 4].imshow(d, cmap="RdBu_r", vmin=0.0, vmax=2.0, aspect="auto")
            if row == 0:
                axes[row, 4].set_title("Jacobian determinant")
                fig.colorbar(im, ax=axes[row, 4], fraction=0.046)
        axes[row, 0].set_ylabel(plane)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
            _label_edges(ax, plane)
    q = result.qa
    jac = "n/a" if q["jacobian_min"] is None else f"{q['jacobian_min']:.2f}..{q['jacobian_max']:.2f}"
    fig.suptitle(f"{' + '.join(q['stages'])} | body Dice in FOV {q['body_dice_in_fov']:.3f} | "
                 f"|CBCT-CT| in body∩FOV {q['mae_cbct_vs_moved_ct_body_fov']:.0f} HU | Jacobian {jac}"
                 + (" | FOLDING" if q["folding"] else "") + " | yellow: CBCT FOV\n"
                 f"views in LPS, radiological convention (patient's right on the image left); "
                 f"file stored {plan.source}")
    fig.tight_layout()
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)


def _write_field(field: np.ndarray, fixed: Volume, path: Path) -> Path:
    img = sitk.GetImageFromArray(field.astype(np.float32), isVector=True)
    fixed.copy_geometry_to(img)
    with atomic_path(path) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
    return path


def output_paths(output: Path) -> dict[str, Path]:
    """Sibling files of the moved CT ``output``: ``<name>_fov``, ``<name>_field``, ``<name>_qa.png/json``."""
    from medgan.io.formats import suffix_of

    suffix = suffix_of(output) or ".nii.gz"
    stem = output.name[: -len(suffix)] if output.name.endswith(suffix) else output.name
    return {"fov": output.with_name(f"{stem}_fov{suffix}"), "field": output.with_name(f"{stem}_field{suffix}"),
            "qa_png": output.with_name(f"{stem}_qa.png"), "qa_json": output.with_name(f"{stem}_qa.json")}


def register_outputs(output: str | Path, fov_output: str | Path | None = None, field_output: str | Path | None = None,
                     qa: bool = True) -> dict[str, tuple[Path, str | None]]:
    """What :func:`register_files` writes: name -> (path, kind) for :class:`medgan.io.writers.OutputPlan`."""
    output = Path(output)
    paths = output_paths(output)
    planned: dict[str, tuple[Path, str | None]] = {
        "moved": (output, None), "fov": (Path(fov_output) if fov_output else paths["fov"], None)}
    if field_output:
        planned["field"] = (Path(field_output), None)
    if qa:
        planned["qa_png"], planned["qa_json"] = (paths["qa_png"], FILE), (paths["qa_json"], FILE)
    return planned


def register_files(fixed: str | Path | Volume, moving: str | Path | Volume, output: str | Path,
                   options: RegistrationOptions | None = None, fov_output: str | Path | None = None,
                   field_output: str | Path | None = None, qa: bool = True,
                   progress: Callable[[str], None] | None = None,
                   inputs=(), overwrite: bool = False,
                   interruptible: bool = False, strict: bool = False) -> tuple[RegistrationResult, dict[str, Path]]:
    """Register, then write the moved CT (int16 HU), the FOV mask, optionally the field, and the QA PNG/JSON.

    Every output is planned before the registration (:class:`medgan.io.writers.OutputPlan`: distinct, not an
    input, writable, no existing file unless ``overwrite``), and all are committed together after it.
    ``inputs``: further paths the outputs must never overwrite (the files behind Volume arguments).
    ``interruptible``: run Elastix in a child process (:func:`register_interruptible`), so that SIGINT/SIGTERM
    stop it at once (``medgan register`` sets it).
    ``strict``: refuse a gantry-tilted DICOM series read from a path (default: resampled, with a notice).
    """
    output = Path(output)
    inputs = [p for p in (fixed, moving) if not isinstance(p, Volume)] + list(inputs)
    planned = register_outputs(output, fov_output, field_output, qa)
    plan = OutputPlan(list(planned.values()), inputs, overwrite)       # before any work: milliseconds
    index = {k: i for i, k in enumerate(planned)}
    fixed_v = fixed if isinstance(fixed, Volume) else read_volume(fixed, strict=strict)
    moving_v = moving if isinstance(moving, Volume) else read_volume(moving, strict=strict)
    run = register_interruptible if interruptible else register
    result = run(fixed_v, moving_v, options, compute_field=True, progress=progress)
    with plan:
        plan.stage_volume(index["moved"], result.moved, dtype="int16",
                          series_description="CT registered to CBCT (medgan register)")
        plan.stage_volume(index["fov"], result.fov, dtype="uint8")
        if field_output:
            field = result.field
            assert field is not None               # compute_field=True above
            plan.stage_file(index["field"], lambda tmp: _write_field(field, fixed_v, tmp))
        if qa:
            plan.stage_file(index["qa_png"], lambda tmp: qa_figure(tmp, result, fixed_v), verify=check_png)
            doc = {"fixed": str(fixed) if not isinstance(fixed, Volume) else fixed.meta.get("path"),
                   "moving": str(moving) if not isinstance(moving, Volume) else moving.meta.get("path"),
                   "rigid": result.rigid, **result.qa}
            plan.stage_text(index["qa_json"], json.dumps(doc, indent=2, allow_nan=False))
        written = dict(zip(planned, plan.commit(), strict=True))
    return result, written


def _registration_child(conn, fixed: Volume, moving: Volume, options, compute_field: bool) -> None:
    """In the child: Elastix, its progress and its result (or error) sent back through ``conn``."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)    # the parent's handler raises in Python, which C++ never reaches
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # Ctrl-C reaches the whole group: the parent decides
    try:                                             # Linux: end with the parent, even if it is SIGKILLed
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)      # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    try:
        res = register(fixed, moving, options, compute_field=compute_field,
                       progress=lambda msg: conn.send(("progress", msg)))
        conn.send(("ok", res))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        try:
            conn.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle: its text
            conn.send(("error", MedganError(f"registration failed: {type(exc).__name__}: {exc}")))
    finally:
        conn.close()


def register_interruptible(fixed: Volume, moving: Volume, options: RegistrationOptions | None = None,
                           compute_field: bool = False,
                           progress: Callable[[str], None] | None = None) -> RegistrationResult:
    """:func:`~medgan.registration.elastix.register` in a forked child process, waited on by this one.

    Elastix runs in C++ and does not return to Python until it is done, so a signal handler in the same
    process would only run at the end.  Here the main thread waits on a pipe and handles SIGINT/SIGTERM at
    once (KeyboardInterrupt, or the CLI's ``Terminated``); the child is then terminated and reaped before the
    exception propagates.  Without ``fork`` (Windows, macOS spawn-only) or outside the main thread, it is
    :func:`register` itself.
    """
    import multiprocessing as mp
    import threading

    if "fork" not in mp.get_all_start_methods() or threading.current_thread() is not threading.main_thread():
        return register(fixed, moving, options, compute_field=compute_field, progress=progress)
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_registration_child, args=(send, fixed, moving, options, compute_field),
                       name="medgan-register", daemon=True)
    proc.start()
    send.close()
    try:
        while True:
            try:
                kind, payload = recv.recv()
            except EOFError:
                proc.join()
                raise MedganError(f"the registration process ended without a result (exit code {proc.exitcode}); "
                                  "is the machine out of memory?") from None
            if kind == "progress":
                if progress is not None:
                    progress(payload)
            elif kind == "ok":
                result: RegistrationResult = payload
                return result
            else:
                raise payload
    finally:
        recv.close()
        if proc.is_alive():
            proc.terminate()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        proc.join()


def match_patients(fixed_dir: Path, moving_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """``(name, cbct, ct)`` for every name present in both folders (any format), and the unmatched names."""
    from medgan.io.cases import index_cases

    f, m = index_cases(fixed_dir), index_cases(moving_dir)
    pairs = [(n, f[n], m[n]) for n in sorted(f) if n in m]
    unmatched = sorted(set(f) ^ set(m))
    if not pairs:
        raise InputError(f"no patient name is in both {fixed_dir} and {moving_dir}; patients are matched by name")
    return pairs, unmatched


def register_folders(fixed_dir: Path, moving_dir: Path, out_dir: Path, options: RegistrationOptions | None = None,
                     fields: bool = False, qa: bool = True, suffix: str = ".nii.gz", progress=None,
                     on_patient: Callable[[str, RegistrationResult], None] | None = None,
                     overwrite: bool = False, interruptible: bool = False, strict: bool = False,
                     ) -> tuple[dict[str, dict[str, Path]], list[tuple[str, str]]]:
    """Register every CT in ``moving_dir`` onto the same-named CBCT in ``fixed_dir``.

    Writes ``out_dir/<name>.nii.gz`` (+ ``_fov``, ``_qa.png``, ``_qa.json``, ``_field`` with ``fields``).
    Returns the written paths per patient and ``(name, error)`` for failures and unmatched names.
    Every patient's outputs are checked before the first registration (no existing file unless ``overwrite``).
    """
    pairs, unmatched = match_patients(Path(fixed_dir), Path(moving_dir))
    out_dir = Path(out_dir)
    everything: list[tuple[Path, str | None]] = []
    for name, _, _ in pairs:
        out = out_dir / f"{name}{suffix}"
        everything += register_outputs(out, None, output_paths(out)["field"] if fields else None, qa).values()
    plan_outputs(everything, [p for _, cbct, ct in pairs for p in (cbct, ct)], overwrite)
    done, failures = {}, [(n, "no counterpart with this name in the other folder") for n in unmatched]
    for name, cbct, ct in (progress(pairs) if progress else pairs):
        out = out_dir / f"{name}{suffix}"
        try:
            res, written = register_files(cbct, ct, out, options, qa=qa,
                                          field_output=output_paths(out)["field"] if fields else None,
                                          overwrite=overwrite, interruptible=interruptible, strict=strict)
            done[name] = written
            if on_patient:
                on_patient(name, res)
        except MedganError as exc:
            failures.append((name, str(exc)))
    return done, failures


def describe(result: RegistrationResult) -> str:
    q, r = result.qa, result.rigid
    jac = "not computed" if q["jacobian_min"] is None else f"{q['jacobian_min']:.3f} .. {q['jacobian_max']:.3f}"
    parts = [f"stages {' + '.join(q['stages'])}"]
    if r:
        parts.append("rigid rotation " + ", ".join(f"{v:+.2f}" for v in r["rotation_deg"]) + " deg, translation "
                     + ", ".join(f"{v:+.1f}" for v in r["translation_mm"]) + " mm")
    parts.append(f"body Dice in FOV {q['body_dice_in_fov']:.3f}")
    parts.append(f"Jacobian determinant {jac}")
    return "; ".join(parts) + (" - WARNING: the deformation folds (det <= 0)" if q["folding"] else "")


__all__ = ["register_files", "register_folders", "register_interruptible", "register_outputs",
           "match_patients", "qa_figure", "checkerboard", "output_paths",
           "describe"]
