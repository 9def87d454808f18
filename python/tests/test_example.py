"""The README's example trains a torchvision model with the static AdamP."""
import re
import subprocess
import sys

from conftest import ROOT


def test_example_trains_resnet18_with_the_static_plan():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_torchvision.py"), "--steps", "3", "--batch", "4", "--size", "32"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    assert "TorchPlan(ResNet: 62 parameters" in out
    assert "channel along axis 0: 20 tensors, 11166912 elements" in out
    losses = [float(v) for v in re.findall(r"step \d: loss ([0-9.]+)", out)]
    assert len(losses) == 3 and all(v == v and v < 10 for v in losses)
