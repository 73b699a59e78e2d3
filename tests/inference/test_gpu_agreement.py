"""Translation on the GPU agrees with the CPU path (issue 31): the values that become HU are fp32.

The CPU tests run everywhere: under bf16 autocast (CPU autocast stands in for CUDA's) the
generator's output layer runs in fp32, so the HU are not on bf16's grid.  The CUDA test needs a
CUDA device and is skipped, with the reason, without one.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from medgan.data.hu import HU_PRESETS
from medgan.inference import runner
from medgan.inference.precision import Fp32, fp32_output, output_layers
from medgan.nets.correction import CorrectionGenerator
from medgan.nets.generators import ResnetGenerator, UNetGenerator
from medgan.simulation.phantom import make_phantom
from tests.conftest import REPO

PRESET = HU_PRESETS["ct-full"]


def nets() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "resnet": ResnetGenerator(2, channels=8, n_blocks=1),
        "unet": UNetGenerator(2, channels=(8, 16), strides=(2,), num_res_units=1),
        "correction": CorrectionGenerator(ResnetGenerator(2, channels=8, n_blocks=1), (2.0, 2.0), 0.5),
    }


def cpu_bf16(device, amp):
    return torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def off_bf16_grid(hu: np.ndarray) -> np.ndarray:
    """For each voxel with |normalised value| > 0.05: is the normalised value NOT a bf16 number?

    bf16 steps there are >= 2^-13 (1e-4), far above float32's rounding of the HU arithmetic (~1e-7)."""
    y = (hu.astype(np.float64) - PRESET.lo) / (PRESET.hi - PRESET.lo) * 2.0 - 1.0
    y = y[np.abs(y) > 0.05]
    assert y.size > 100
    on_grid = torch.from_numpy(y.astype(np.float32)).bfloat16().double().numpy()
    return np.abs(y - on_grid) > 1e-6


@pytest.mark.parametrize("name", ["resnet", "unet", "correction"])
def test_output_layer_is_fp32_under_bf16_autocast(name):
    net = nets()[name].eval()
    f = net.correction if name == "correction" else net       # a correction model's output is x + this
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modules = dict(net.named_modules())
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = f(x)
            with fp32_output(net):
                wrapped = dict(net.named_modules())
                fp32 = f(x)
        reference = f(x)                     # no autocast at all
    assert plain.dtype == torch.bfloat16     # what autocast alone gives: HU rounded to bf16
    assert fp32.dtype == torch.float32
    assert all(isinstance(wrapped[n], Fp32) for n in output_layers(net))
    # the low-pass of a correction generator is wrapped too
    assert (name == "correction") == any(n.endswith("lowpass") for n in output_layers(net))
    # restored afterwards: the same modules and weights (a model file's keys are unchanged)
    assert dict(net.named_modules()).keys() == modules.keys()
    assert all(a is b for a, b in zip(net.modules(), modules.values(), strict=True))
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    # the inner layers still ran in bf16: fp32 differs from a full fp32 run, but by less than plain bf16 output does
    assert float((fp32 - reference).abs().max()) > 0
    assert float((fp32 - reference).abs().mean()) <= float((plain.float() - reference).abs().mean())


def test_fp32_output_restores_modules_after_an_error():
    net = nets()["resnet"]
    names = output_layers(net)
    with pytest.raises(RuntimeError), fp32_output(net):
        net(torch.rand(1, 3, 16, 16))            # wrong channel count
    assert not any(isinstance(m, Fp32) for m in net.modules()) and output_layers(net) == names


@pytest.mark.parametrize("name", ["resnet", "correction"])
def test_run_generator_hu_are_fp32_under_bf16_autocast(monkeypatch, name):
    """Through the inference engine: with CPU bf16 autocast in place of CUDA's, the HU are not bf16 numbers."""
    net = nets()[name]
    ct, _ = make_phantom(0, shape=(3, 48, 48), spacing_zyx=(2.5, 4.0, 4.0))
    hu = np.asarray(ct.array, dtype=np.float32)
    output = "correction" if name == "correction" else "image"
    monkeypatch.setattr(runner, "autocast", cpu_bf16)
    kw = dict(preset=PRESET, spatial_dims=2, device=torch.device("cpu"), batch_size=2, amp=True)
    if output == "correction":
        corr = runner.run_generator(net, hu, output="correction", **kw)
        res = np.clip(hu + corr, PRESET.lo, PRESET.hi)        # what translate adds
    else:
        res = runner.run_generator(net, hu, **kw)
    assert res.dtype == np.float32
    assert off_bf16_grid(res if output == "image" else corr + PRESET.lo + (PRESET.hi - PRESET.lo) / 2).mean() > 0.9
    # the check can fail: without fp32_output the network's output is bf16, and so is every HU
    if output == "image":
        monkeypatch.setattr(runner, "fp32_output", lambda net, enabled=True: contextlib.nullcontext())
        rounded = runner.run_generator(net, hu, **kw)
        assert off_bf16_grid(rounded).mean() < 0.01


# ---------------------------------------------------------------------------- CUDA vs CPU
def _cuda_reason() -> str:
    if torch.cuda.is_available():
        return ""
    build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
    return f"no CUDA device: torch.cuda.is_available() is False ({build})"


def _model(kind: str, tmp_path):
    from medgan.config import config_to_dict, load_config
    from medgan.data.hu import get_preset
    from medgan.engine.methods.cyclegan import CycleGAN
    from medgan.inference.model import STARTER_MODEL
    from medgan.io.model_file import ModelSpec, write_model_file

    if kind == "starter":
        if not STARTER_MODEL.exists():
            pytest.skip("the shipped starter model is not installed")
        return STARTER_MODEL
    # a ResNet-9 translation (image-output) model as configs/cbct2ct_2d.yaml, randomly initialised
    torch.manual_seed(0)
    cfg = load_config(REPO / "configs" / "cbct2ct_2d.yaml", ["train.device=cpu"])
    model = CycleGAN(cfg, torch.device("cpu"))
    spec = ModelSpec(config_to_dict(cfg), get_preset(cfg.data.hu_preset).to_dict(), step=0)
    return write_model_file(tmp_path / "resnet9.safetensors", model.gen.state_dict(), spec)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=_cuda_reason())
@pytest.mark.parametrize("amp", [True, False], ids=["bf16-autocast", "fp32"])
@pytest.mark.parametrize("kind", ["starter", "resnet9"])
def test_cuda_translation_agrees_with_cpu_within_1_hu(tmp_path, kind, amp):
    from medgan.inference.model import load_model
    from medgan.inference.translate import TranslateOptions, translate

    path = _model(kind, tmp_path)
    spacing = load_model(path).config.data.spacing or [1.0, 1.0]
    ct, _ = make_phantom(2, shape=(4, 256, 256), spacing_zyx=(2.5, spacing[1], spacing[0]))
    out = {}
    for device in ("cpu", "cuda"):
        opts = TranslateOptions(device=device, amp=amp, guard=False, quiet=True, batch_size=4)
        out[device] = translate(ct, load_model(path), opts).array
    diff = np.abs(out["cuda"].astype(np.float64) - out["cpu"])
    assert np.isfinite(diff).all()
    assert float(np.abs(out["cpu"] - ct.array).max()) > 1.0      # the network changed the image
    assert diff.max() <= 1.0, (f"{kind}, amp={amp}: |GPU - CPU| max {diff.max():.2f} HU, "
                               f"99th percentile {np.percentile(diff, 99):.2f} HU")
