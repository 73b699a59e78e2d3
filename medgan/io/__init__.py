"""Reading and writing patient volumes with their exact geometry.

>>> from medgan.io import read_volume, write_volume
>>> ct = read_volume("patient01/CT")              # DICOM folder, .zip, .nii.gz, .mha, .nrrd
>>> write_volume(ct, "patient01_ct.nii.gz")       # temp file, fsync, read back and compared, then renamed
>>> axial, plan = to_orientation(ct)              # exact permutation/flip to LPS (axial slices) ...
>>> back = from_orientation(axial.array, plan, ct)  # ... and back onto ct's grid, voxel for voxel
"""
from medgan.io.orientation import from_orientation, to_orientation
from medgan.io.readers import read_volume
from medgan.io.volume import Volume, orientation_code
from medgan.io.writers import VolumeOutput, output_complete, plan_outputs, resolve_output, write_volume, write_volumes

__all__ = ["Volume", "read_volume", "write_volume", "write_volumes", "VolumeOutput", "plan_outputs", "output_complete",
           "resolve_output", "orientation_code", "to_orientation", "from_orientation"]
