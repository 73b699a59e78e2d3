"""The segmentation-augmentation study: does synthetic non-contrast CT help a segmentation model trained on
contrast CT?  :mod:`.study` is the design (arms, cohort, U-Net, pre-declared analysis), :mod:`.run` the stages
and the report; :func:`medgan.workflows.segmentation.run.run_study` is the one call."""
