"""Dose evaluation of synthetic CTs: does the dose on the sCT match the dose on the real CT?

Plan photon IMRT and/or proton IMPT on the CT with pyRadPlan, recompute with the weights fixed on
the sCT (and the CBCT, and any baseline), then compare: global gamma pass rates (pymedphys),
DVH points, SynthRAD2023's dose MAE and DVH score, and proton range shifts along each beam.
Needs the optional extra ``medgan[dose]``; see docs/dose.md.
"""
from medgan.dose.backend import HLUT, relative_stopping_power
from medgan.dose.recompute import SITES, DoseOptions, DoseResult, dose_rows, run_dose

__all__ = ["DoseOptions", "DoseResult", "SITES", "HLUT", "dose_rows", "relative_stopping_power", "run_dose"]
