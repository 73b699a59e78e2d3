"""Translating files and folders of cases: read, translate, write, with every output checked first.

>>> from medgan.inference import load_model, translate_folder, TranslateOptions
>>> outcomes = translate_folder("cbct/", "sct/", load_model("run/"), TranslateOptions(), qa_dir="qa/")
>>> [o.case.name for o in outcomes if o.status == "failed"]

``medgan translate`` is a thin command line over these two functions; pipelines call them directly.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from medgan.errors import MedganError, OutputError
from medgan.inference.model import TranslationModel
from medgan.inference.translate import TranslateOptions, translate
from medgan.io.cases import case_name, list_volumes
from medgan.io.formats import OUTPUT_TYPES, format_of


@dataclasses.dataclass
class CaseOutcome:
    """What :func:`translate_folder` did with one case."""

    case: Path
    output: Path
    status: str                 #: ``"ok"``, ``"skipped"`` (already done) or ``"failed"``
    seconds: float = 0.0
    error: str | None = None    #: the one-line error of a failed case


def series_description(baseline: str | None) -> str:
    """The description written with a translated volume (DICOM SeriesDescription)."""
    return "medgan synthetic CT" if baseline is None else f"medgan CBCT, {baseline} HU calibration"


def case_output(case: Path, out_dir: Path, output_type: str | None = None) -> Path:
    """Where :func:`translate_folder` writes ``case``: ``out_dir/<case name>`` plus the output type's suffix.

    Without ``output_type``, NIfTI/MHA/NRRD inputs keep their format and anything else becomes NIfTI.
    """
    name = case_name(case)
    if output_type == "dicom":
        return out_dir / name
    found = format_of(case)
    fmt = output_type or (found if found in ("nifti", "mha", "nrrd") else "nifti")
    return out_dir / (name + OUTPUT_TYPES[fmt])


def translate_file(src: str | Path, dst: str | Path, model: TranslationModel, opts: TranslateOptions | None = None,
                   *, output_type: str | None = None, qa_path: str | Path | None = None, overwrite: bool = False,
                   series_uid: str | None = None, dtype: str = "int16") -> Path:
    """Translate the volume at ``src`` and write it to ``dst`` (and the QA map to ``qa_path``); returns ``dst``.

    Every output is checked (distinct, not the input, writable) before the translation and
    before any is written; the writes are atomic.
    """
    from medgan.io import read_volume
    from medgan.io.writers import VolumeOutput, plan_outputs, write_volumes

    opts = opts or TranslateOptions()
    planned = plan_outputs([(dst, output_type)] + ([(qa_path, None)] if qa_path is not None else []),
                           inputs=[src], overwrite=overwrite)
    out_path, out_type = planned[0].path, planned[0].type
    volume = read_volume(src, series_uid=series_uid, strict=opts.strict)    # --strict refuses a gantry tilt
    if out_type == "dicom" and not volume.meta.get("format", "").startswith("dicom"):
        if output_type is None:               # DICOM only because the name has no suffix: say so
            raise OutputError(f"{out_path} has no file suffix, which means a DICOM folder, but {src} is not DICOM; "
                              f"give a file name such as {out_path.name}.nii.gz (or -ot nifti)")
        raise OutputError("DICOM output needs a DICOM input (the new series joins the input's study)")
    # made directly in the written type (no whole-volume float result); the input is then let go (memory)
    if qa_path is not None:
        result, qa = translate(volume, model, opts, qa_map=True, dtype=dtype)
    else:
        result, qa = translate(volume, model, opts, dtype=dtype), None
    del volume
    # the guard's "unchanged" output keeps the input's voxel type, so that it is bit-identical to the input
    keep = result.meta.get("unchanged") and out_type != "dicom"
    cast = None if keep or result.array.dtype == dtype else dtype     # already in it: the writers' cast would copy
    outputs = [VolumeOutput(result, out_path, out_type, cast, series_description(opts.baseline))]
    if qa is not None:
        outputs.append(VolumeOutput(qa, planned[1].path, planned[1].type))
    return write_volumes(outputs, inputs=[src], overwrite=overwrite)[0]


def translate_folder(src_dir: str | Path, out_dir: str | Path, model: TranslationModel,
                     opts: TranslateOptions | None = None, *, output_type: str | None = None,
                     qa_dir: str | Path | None = None, skip_done: bool = False, overwrite: bool = False,
                     series_uid: str | None = None,
                     progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None) -> list[CaseOutcome]:
    """Translate every case of ``src_dir`` (:func:`medgan.io.cases.list_volumes`) into ``out_dir``.

    Every output of every case is checked before the first case is translated (distinct: ``p1.nii.gz`` and
    ``p1.mha`` would both become ``p1.nii.gz``; not an input; writable; no existing file unless ``overwrite``),
    so a folder holding another patient's output is refused in one :class:`~medgan.errors.OutputError`.
    A failing case (a :class:`~medgan.errors.MedganError`) is recorded and the batch goes on.
    ``skip_done`` skips cases whose output already reads back complete (resuming a batch); an existing output
    that does not read back complete is then translated again and replaced.
    ``progress`` wraps the case iterator (e.g. :func:`medgan.utils.progress.bar`).
    """
    from medgan.io.writers import output_complete, plan_outputs

    out_dir = Path(out_dir)
    qa_folder = Path(qa_dir) if qa_dir is not None else None
    cases = list_volumes(src_dir)
    dsts = {case: case_output(case, out_dir, output_type) for case in cases}
    qas = {case: case_output(case, qa_folder, "nifti") if qa_folder is not None else None for case in cases}
    plan_outputs([(dsts[c], output_type) for c in cases] + [(q, None) for c in cases if (q := qas[c]) is not None],
                 inputs=cases, overwrite=overwrite or skip_done)
    outcomes = []
    for case in (progress(cases) if progress else cases):
        dst, qa = dsts[case], qas[case]
        if skip_done and output_complete(dst, output_type):     # a readable volume, not just a name
            outcomes.append(CaseOutcome(case, dst, "skipped"))
            continue
        t0 = time.perf_counter()
        try:
            translate_file(case, dst, model, opts, output_type=output_type, qa_path=qa,
                           overwrite=overwrite or skip_done, series_uid=series_uid)
            outcomes.append(CaseOutcome(case, dst, "ok", time.perf_counter() - t0))
        except MedganError as exc:
            outcomes.append(CaseOutcome(case, dst, "failed", time.perf_counter() - t0, str(exc)))
    return outcomes
