"""medgan: unpaired medical image-to-image translation with CycleGAN.

The everyday API, importable from the top level (loaded lazily so that
``import medgan`` stays fast)::

    import medgan
    ct = medgan.read_volume("cbct_dicom_folder/")
    sct = medgan.translate(ct, "run/model.safetensors")
    medgan.write_volume(sct, "sct.nii.gz", dtype="int16")
    result = medgan.evaluate_case(sct, "ct.nii.gz", input=ct)
"""
__version__ = "0.2.0"

_API = {
    "translate": "medgan.inference.translate",
    "TranslateOptions": "medgan.inference.translate",
    "load_model": "medgan.inference.model",
    "read_volume": "medgan.io",
    "write_volume": "medgan.io",
    "Volume": "medgan.io",
    "evaluate_case": "medgan.evaluation.evaluate",
}
__all__ = ["__version__", *_API]


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'medgan' has no attribute {name!r}")
