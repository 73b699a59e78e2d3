"""Reading and writing patient volumes with their exact geometry.

>>> from medgan.io import read_volume, write_volume
>>> ct = read_volume("patient01/CT")              # DICOM folder, .zip, .nii.gz, .mha, .nrrd
>>> write_volume(ct, "patient01_ct.nii.gz")       # atomic: temp file, then rename
"""
from medgan.io.readers import read_volume
from medgan.io.volume import Volume, orientation_code
from medgan.io.writers import resolve_output, write_volume

__all__ = ["Volume", "read_volume", "write_volume", "resolve_output", "orientation_code"]
