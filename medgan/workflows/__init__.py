"""Workflows: one library call per end-to-end recipe, over the Python API (inference, evaluation, engine).

* :mod:`medgan.workflows.cohort`: patient grouping, splits and k-folds held out by source patient;
* :mod:`medgan.workflows.cbct2ct`: CBCT -> synthetic CT on simulated CBCTs (``run_cbct2ct``) and on real
  CBCT/CT pairs (``run_real_data``): prepare a cohort, train a recipe, evaluate a cohort;
* :mod:`medgan.workflows.segmentation`: the segmentation-augmentation study (``run_study``);
* :mod:`medgan.workflows.demo`: ``make demo`` (``run_demo``).

The scripts in ``pipelines/`` are argument parsing plus one call each; the library raises
:class:`medgan.errors.MedganError`, which the scripts turn into one line on stderr.  Nothing below
``medgan.cli`` imports this package.
"""
