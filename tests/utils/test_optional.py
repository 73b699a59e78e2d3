"""medgan.utils.optional: a missing optional dependency is one DependencyError naming its extra, and one CLI line."""
from __future__ import annotations

import math
import sys

import pytest

from medgan.errors import DependencyError
from medgan.utils.optional import check, dependency_error, require


def test_require_returns_the_module_and_checks_its_attributes():
    assert require("math", "trigonometry", "python", "none", attributes=("cos",)) is math
    with pytest.raises(DependencyError) as info:
        require("math", "Elastix registration", "itk-elastix", "register", attributes=("ParameterObject",))
    assert str(info.value) == "Elastix registration needs itk-elastix: pip install 'medgan[register]'"
    assert isinstance(info.value.__cause__, AttributeError)


def test_a_missing_module_names_the_extra_or_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "xraydb", None)                # what an uninstalled module looks like to import
    with pytest.raises(DependencyError) as info:
        require("xraydb", "CBCT material decomposition", "xraydb", "simulate")
    assert str(info.value) == "CBCT material decomposition needs xraydb: pip install 'medgan[simulate]'"
    assert isinstance(info.value.__cause__, ImportError)
    with pytest.raises(DependencyError, match=r"^FID needs torchvision: pip install torchvision$"):
        require("medgan_no_such_module", "FID", "torchvision")
    assert str(dependency_error("x", "y")) == "x needs y: pip install y"


def test_check_finds_modules_without_importing_them(monkeypatch):
    check(("math", "json"), "nothing", "nothing")
    with pytest.raises(DependencyError, match=r"medgan\[dose\]"):
        check(("math", "medgan_no_such_module"), "dose calculation", "pyRadPlan and pymedphys", "dose")
    monkeypatch.setitem(sys.modules, "pymedphys", None)                 # installed, but blocked
    with pytest.raises(DependencyError, match=r"medgan\[dose\]"):
        check(("pymedphys",), "dose calculation", "pyRadPlan and pymedphys", "dose")
    with pytest.raises(DependencyError, match=r"medgan\[x\]"):
        check(("medgan_no_such_package.sub",), "x", "x", "x")        # a missing parent package


@pytest.mark.parametrize("module, call, extra", [
    ("itk", "medgan.registration.elastix:_itk", "register"),
    ("pylinac", "medgan.simulation.catphan:_pylinac", "qa"),
    ("xraydb", "medgan.simulation.materials:_xraydb", "simulate"),
    ("itk", "medgan.simulation.cbct:require_rtk", "simulate"),
    ("pymedphys", "medgan.dose.backend:pymedphys", "dose"),
    ("pymedphys", "medgan.dose.backend:check_extra", "dose"),
    ("pyRadPlan", "medgan.dose.backend:pyradplan", "dose"),
])
def test_every_optional_import_names_its_extra(monkeypatch, module, call, extra):
    import importlib

    path, name = call.split(":")
    function = getattr(importlib.import_module(path), name)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(DependencyError, match=rf"pip install 'medgan\[{extra}\]'$"):
        function()


def test_fid_features_name_torchvision(monkeypatch):
    from medgan.evaluation.distribution import FEATURE_EXTRACTORS

    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(DependencyError, match=r"^FID/KID with inception-v3 needs torchvision: pip install torchvision"):
        FEATURE_EXTRACTORS["inception-v3"]({})


def test_tensorboard_logging_names_its_extra(monkeypatch, tmp_path):
    from medgan.config import load_config
    from medgan.engine.trainer import Trainer
    from tests.conftest import REPO
    from tests.engine.test_gan_toolbox import make_phantom_folders

    a, b = make_phantom_folders(tmp_path / "domains")
    cfg = load_config(REPO / "configs" / "tiny_cpu.yaml", [f"data.train_a={a}", f"data.train_b={b}",
                                                           "train.tensorboard=true"])
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(DependencyError, match=r"^train.tensorboard needs tensorboard: pip install 'medgan\[tensorb"):
        Trainer(cfg, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()          # refused before the run folder or its config is written


def test_the_cli_prints_one_line_and_exits_1(monkeypatch, run_cli, tmp_path):
    monkeypatch.setitem(sys.modules, "pymedphys", None)
    code, out, err = run_cli("dose", "--ct", tmp_path / "ct.nii.gz", "--sct", tmp_path / "sct.nii.gz",
                             "--target-sphere", "0,0,0,10", "-o", tmp_path / "dose")
    assert code == 1 and out == ""
    assert err == ("medgan dose: error: dose calculation needs pyRadPlan and pymedphys: "
                   "pip install 'medgan[dose]'\n")
    assert not (tmp_path / "dose").exists()
