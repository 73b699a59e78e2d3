"""Applying a trained generator to whole volumes: the Python API under ``medgan translate``.

>>> from medgan.inference import TranslateOptions, load_model, translate, translate_folder
>>> model = load_model("run/")                       # a run folder, model file or checkpoint
>>> sct = translate(read_volume("cbct.nii.gz"), model, TranslateOptions(device="cpu"))
>>> outcomes = translate_folder("cbct/", "sct/", model)   # a folder of cases, one outcome per case

Models are read through :mod:`medgan.io.model_file`; nothing here imports the training engine.
"""
from medgan.inference.batch import CaseOutcome, case_output, translate_file, translate_folder
from medgan.inference.model import STARTER_MODEL, TranslationModel, load_model
from medgan.inference.translate import TranslateOptions, translate

__all__ = ["TranslateOptions", "translate", "TranslationModel", "load_model", "STARTER_MODEL", "CaseOutcome",
           "case_output", "translate_file", "translate_folder"]
